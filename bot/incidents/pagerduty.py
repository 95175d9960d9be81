"""PagerDuty webhook v3 `incident.*` events applied to our incidents.

`incident.triggered` opens the incident and its thread. Later events edit the
root message and add a short thread reply; there is never a second thread.
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
from bot.slack.blocks import escape

log = structlog.get_logger("bot.ingest.pagerduty")

STATUS_EVENTS = {
    "incident.acknowledged": ("acknowledged", ":eyes: Acknowledged in PagerDuty by {agent}."),
    "incident.unacknowledged": (
        "triggered",
        ":rotating_light: Unacknowledged in PagerDuty: nobody owns it.",
    ),
    "incident.resolved": ("resolved", ":white_check_mark: Resolved in PagerDuty by {agent}."),
    "incident.reopened": ("triggered", ":rotating_light: Reopened in PagerDuty by {agent}."),
}
NOTE_EVENTS = {
    "incident.escalated": ":arrow_up: Escalated in PagerDuty; now assigned to {assignees}.",
    "incident.reassigned": ":busts_in_silhouette: Reassigned in PagerDuty to {assignees}.",
    "incident.delegated": ":busts_in_silhouette: Delegated in PagerDuty to {assignees}.",
    "incident.priority_updated": ":label: Priority set to {priority} by {agent}.",
    "incident.annotated": ":memo: Note from {agent} in PagerDuty: {content}",
    "incident.responder.added": ":raising_hand: Responder added in PagerDuty: {responder}.",
    "incident.responder.replied": ":speech_balloon: Responder replied in PagerDuty: {responder}.",
    "incident.status_update_published": ":mega: Status update published: {content}",
}
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
        status, template = STATUS_EVENTS[event_type]
        return service.change_status(number, status, facts["agent"], template.format(**facts))
    if event_type == "incident.escalated" and service.ladder is not None:
        service.ladder.mirror_pagerduty(number)
    service.note(number, NOTE_EVENTS[event_type].format(**facts), refresh_root=True)
    return Outcome(incidents=[number], changed=True)


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
    """Names for the thread reply, escaped: PagerDuty text is outside input too."""
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
        "agent": escape(str(_mapping(event.get("agent")).get("summary") or "PagerDuty"))[:200],
        "assignees": escape(", ".join(names) or "nobody")[:500],
        "priority": escape(str(_mapping(incident.get("priority")).get("summary") or "none"))[:100],
        "content": escape(str(data.get("content") or data.get("message") or ""))[:1500],
        "responder": escape(str(responder))[:200],
    }
