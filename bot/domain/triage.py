"""From alerts to incident plans: what the bot would do, decided without any I/O.

`simulate` prints these plans; ingest stores them and the Slack layer renders
them. Alerts that share an incident key become one plan (one Slack thread).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.domain.alerts import Alert, AlertStatus, Severity
from bot.domain.escalation import LadderStep, escalation_ladder
from bot.domain.playbooks import (
    PlannedStep,
    Playbook,
    PlaybookMatch,
    incident_key,
    match_playbook,
    plan_playbook,
)
from bot.domain.routing import Classification, Route, classify, highest, routes_for
from bot.settings import Settings


@dataclass(frozen=True)
class IncidentPlan:
    key: str
    title: str
    severity: Severity
    severity_reason: str
    routes: list[Route]
    match: PlaybookMatch
    alerts: list[Alert]
    steps: list[PlannedStep]
    ladder: list[LadderStep]

    @property
    def playbook(self) -> Playbook:
        return self.match.playbook

    @property
    def firing(self) -> int:
        return sum(1 for a in self.alerts if a.status is AlertStatus.FIRING)

    @property
    def resolved(self) -> int:
        return len(self.alerts) - self.firing

    @property
    def service(self) -> str | None:
        return next((a.labels["service"] for a in self.alerts if a.labels.get("service")), None)


def plan_incidents(
    alerts: Iterable[Alert], playbooks: list[Playbook], settings: Settings
) -> list[IncidentPlan]:
    """Group alerts by incident key (in arrival order) and plan each group."""
    groups: dict[str, list[tuple[Alert, PlaybookMatch, Classification]]] = {}
    for alert in alerts:
        match = match_playbook(alert, playbooks)
        classification = classify(alert, settings.severity_thresholds)
        groups.setdefault(incident_key(alert, match.playbook), []).append(
            (alert, match, classification)
        )
    return [
        plan_with_playbook([a for a, _, _ in members], members[0][1], settings, key=key)
        for key, members in groups.items()
    ]


def plan_with_playbook(
    alerts: list[Alert], match: PlaybookMatch, settings: Settings, key: str | None = None
) -> IncidentPlan:
    """Plan one incident for alerts already matched to a playbook (or declared with one)."""
    lead_alert = alerts[0]
    classifications = [classify(alert, settings.severity_thresholds) for alert in alerts]
    severity = highest([c.severity for c in classifications])
    reason = next(c.reason for c in classifications if c.severity is severity)
    return IncidentPlan(
        key=key or incident_key(lead_alert, match.playbook),
        title=lead_alert.title,
        severity=severity,
        severity_reason=reason,
        routes=routes_for(severity, lead_alert.source),
        match=match,
        alerts=alerts,
        steps=plan_playbook(match.playbook, lead_alert, settings.allowed_targets),
        ladder=escalation_ladder(severity, settings),
    )
