"""The incident's root message, rendered from its stored state (re-rendered on each change)."""

from __future__ import annotations

from typing import Any

from bot.communication import ROLE_TITLES
from bot.domain.playbooks import GENERIC_TRIAGE, LoadedPlaybooks
from bot.settings import Settings
from bot.slack.blocks import IncidentView, root_blocks, root_text, to_json
from bot.store.models import Incident
from bot.store.repository import AlertSummary


def incident_view(
    incident: Incident,
    playbooks: LoadedPlaybooks,
    settings: Settings,
    summary: AlertSummary,
    review_url: str | None = None,
) -> IncidentView:
    playbook = playbooks.get(incident.playbook_id) or GENERIC_TRIAGE
    levels = {level.level: level.role for level in settings.escalation.levels}
    labels = incident.labels or {}
    return IncidentView(
        number=incident.id,
        title=incident.title,
        severity=incident.severity,
        status=incident.status,
        playbook_id=playbook.id,
        playbook_title=playbook.title,
        escalation_level=incident.escalation_level,
        escalation_role=levels.get(incident.escalation_level),
        service=labels.get("service"),
        pagerduty_url=incident.pagerduty_url,
        firing=summary.firing,
        resolved=summary.resolved,
        first_seen=summary.first_seen,
        last_seen=summary.last_seen,
        top_labels=tuple(summary.top_labels),
        roles=tuple(
            (ROLE_TITLES[role], tuple((incident.roles or {}).get(role) or ()))
            for role in ROLE_TITLES
            if role != "stakeholders"
        ),
        public_status=incident.public_status,
        review_url=review_url,
    )


def root_message(view: IncidentView) -> tuple[str, list[dict[str, Any]]]:
    return root_text(view), to_json(root_blocks(view))
