"""The incident's root message, rendered from its stored state (re-rendered on each change)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bot.communication import ROLE_TITLES
from bot.domain.playbooks import GENERIC_TRIAGE, LoadedPlaybooks
from bot.settings import Settings
from bot.slack.blocks import IncidentView, root_blocks, root_text, to_json
from bot.slack.drill_text import (
    DRILL_TITLE_PREFIX,
    DrillStatus,
    drill_context_block,
    drill_status_line,
)
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


def root_message(
    view: IncidentView, drill: DrillStatus | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """The root's fallback text and blocks; ``drill``: the incident is a recovery drill's."""
    if drill is None:
        return root_text(view), to_json(root_blocks(view))
    # The title carries the mark so that the header, the fallback text and a
    # phone's notification all say DRILL; the line under the header says why.
    view = replace(view, title=f"{DRILL_TITLE_PREFIX}{view.title}")
    text = root_text(view)
    if drill != "running":
        text = f"{text} — DRILL finished: {drill.upper()}"
    blocks = to_json(root_blocks(view))
    blocks.insert(1, drill_context_block(drill_status_line(drill)))
    return text, blocks
