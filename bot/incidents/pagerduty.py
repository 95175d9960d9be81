"""PagerDuty webhook v3 `incident.*` events applied to our incidents.

`incident.triggered` opens the incident (and so its one thread). Later events
become status changes (acknowledged, unacknowledged, resolved, reopened) or a
`pagerduty.note` timeline event with the names PagerDuty sent; the outputs say
them (the Slack output edits the root and replies in the thread).
An event for an incident we have never seen opens it from the event's data
(PagerDuty events carry the whole incident), except `resolved`, which has
nothing left to do and is only recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from bot.domain.alerts import Alert, PayloadError, parse_pagerduty
from bot.incidents.service import IncidentService, Outcome

log = structlog.get_logger("bot.ingest.pagerduty")

# PagerDuty event → our status change (the outputs say who did it, in PagerDuty).
STATUS_EVENTS = {
    "incident.acknowledged": "acknowledged",
    "incident.unacknowledged": "triggered",
    "incident.resolved": "resolved",
    "incident.reopened": "triggered",
}
# Recorded as `pagerduty.note` timeline events with the facts `_facts` extracts.
NOTE_EVENTS = frozenset(
    {
        "incident.escalated",
        "incident.reassigned",
        "incident.delegated",
        "incident.priority_updated",
        "incident.annotated",
        "incident.responder.added",
        "incident.responder.replied",
        "incident.status_update_published",
    }
)
HANDLED = {"incident.triggered", *STATUS_EVENTS, *NOTE_EVENTS}


def handle_pagerduty_event(
    service: IncidentService, body: Any, redelivered: bool = False
) -> Outcome:
    """Apply one parsed webhook body. Raises PayloadError for a malformed one.

    `redelivered`: possibly applied before by a process that died (see
    IncidentService.ingest_alerts).
    """
    event_type = event_type_of(body)
    if event_type not in HANDLED:
        log.info("pagerduty event ignored", event_type=event_type)
        return Outcome(message=f"event type {event_type} is not handled")
    alert = parse_pagerduty(body)
    assert alert.pagerduty_incident_id is not None
    facts = _facts(body)
    existing = service.repo.get_incident_by_pagerduty_id(alert.pagerduty_incident_id)
    if existing is None:
        if event_type == "incident.resolved":
            service.repo.audit(
                "pagerduty",
                "pagerduty.unknown_incident_resolved",
                None,
                {"pagerduty_incident_id": alert.pagerduty_incident_id},
            )
            return Outcome(message="resolved event for an incident we never opened: recorded")
        outcome = service.ingest_alerts([_as_trigger(alert)], redelivered)
        if event_type == "incident.triggered":
            return outcome
        number = outcome.incidents[0]
    else:
        number = existing.id
        if event_type == "incident.triggered":
            return Outcome(incidents=[number], message="already open")
    if event_type in STATUS_EVENTS:
        return service.change_status(
            number, STATUS_EVENTS[event_type], "pagerduty", via="pagerduty", agent=facts["agent"]
        )
    return service.pagerduty_note(number, event_type, facts)


def event_type_of(body: Any) -> str:
    """The event type of a well-formed v3 webhook body; PayloadError otherwise."""
    if not isinstance(body, Mapping):
        raise PayloadError("PagerDuty payload must be a JSON object")
    event = body.get("event")
    if not isinstance(event, Mapping):
        raise PayloadError("PagerDuty payload needs an 'event' object")
    event_type = event.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise PayloadError("PagerDuty event needs an 'event_type' string")
    return event_type[:100]


def _as_trigger(alert: Alert) -> Alert:
    """A later event for an unknown incident opens it as if it had just triggered."""
    return alert.model_copy(update={"pagerduty_event_type": "incident.triggered"})


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _facts(body: Mapping[str, Any]) -> dict[str, str]:
    """Names for the outputs (outside input: each output escapes them for its medium)."""
    event = _mapping(body["event"])
    data = _mapping(event.get("data"))
    incident = _mapping(data.get("incident")) or data
    assignees = incident.get("assignees")
    names = [
        str(a["summary"])
        for a in (assignees if isinstance(assignees, list) else [])
        if isinstance(a, Mapping) and a.get("summary")
    ]
    responder = _mapping(data.get("user")).get("summary") or data.get("summary") or "someone"
    return {
        "agent": (str(_mapping(event.get("agent")).get("summary") or "PagerDuty"))[:200],
        "assignees": (", ".join(names) or "nobody")[:500],
        "priority": (str(_mapping(incident.get("priority")).get("summary") or "none"))[:100],
        "content": (str(data.get("content") or data.get("message") or ""))[:1500],
        "responder": (str(responder))[:200],
    }
