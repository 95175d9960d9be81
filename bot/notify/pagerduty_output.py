"""PagerDuty as a timeline output: events in, durable queue rows out, then delivery.

`PagerDutyOutput` turns events into queue rows in the event's own transaction
(no I/O): an incident and its pages commit together or not at all.

* ``opened`` / ``resolved`` of an incident whose routes include PagerDuty
  (critical, not from PagerDuty itself) → ``pagerduty.trigger`` /
  ``pagerduty.resolve`` through the Events API v2, keyed by the incident key
  so an alert storm is one PagerDuty incident;
* ``level.reached`` above level 1 (PagerDuty starts level 1 by itself) of an
  incident with a PagerDuty counterpart, unless the level came from PagerDuty
  → ``pagerduty.level`` then ``pagerduty.note`` through the REST API.

The level and its note are two rows, not one: each row is one HTTP call, so a
retried note never re-sends the level change (which re-notifies that level's
on-call in PagerDuty). The queue sends an incident's rows oldest first, so the
note follows the level.

A recovery drill's incident enqueues nothing: a drill changes nothing real.

`PagerDutyDelivery` is the queue's `Sender` for these rows. Its clients retry
once at most (`QUEUE_RETRIES`): the queue's backoff and ``Retry-After``
handling are the retry policy, and a worker thread is not held for seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import httpx2
import pagerduty
from sqlalchemy.orm import Session

from bot.domain.alerts import AlertSource, Severity
from bot.domain.routing import Route, routes_for
from bot.notify.email import NotifyError
from bot.notify.pagerduty import PagerDutyEvents, PagerDutyRest, Verify, pagerduty_from_settings
from bot.notify.retry_after import delay_seconds
from bot.store.models import Incident
from bot.timeline.events import Event, Kind
from bot.timeline.queue import Failed, Result, Retry, Sent, enqueue

if TYPE_CHECKING:
    from bot.settings import Settings

OUTPUT_NAME = "pagerduty"
# Pacing keys: the Events API limits per routing key, the REST API per account.
EVENTS_KEY = "events"
REST_KEY = "rest"

# The adapters' own retries: 1 is their minimum (0 would be the library's
# "retry HTTP 429 forever"). Short backoff: the queue waits the long waits.
QUEUE_RETRIES = 1
QUEUE_BACKOFF_S = 0.5
# A 429 that does not say how long to wait.
DEFAULT_RATE_LIMIT_WAIT_S = 5.0
# A page must not sit behind a bogus header for hours.
MAX_RATE_LIMIT_WAIT_S = 300.0

# Labels worth seeing in PagerDuty's alert details (as NoticeRouter sent them).
_DETAIL_LABELS = ("service", "alertname", "scenario")


class Method(StrEnum):
    TRIGGER = "pagerduty.trigger"
    RESOLVE = "pagerduty.resolve"
    LEVEL = "pagerduty.level"
    NOTE = "pagerduty.note"


def level_note(level: int, role: str, reason: str) -> str:
    """What the incident's PagerDuty timeline says when the bot escalates it."""
    return f"NEXUS bot: level {level} — {role} ({reason})."


class PagerDutyOutput:
    """Enqueues PagerDuty deliveries for timeline events; see the module docstring."""

    name = OUTPUT_NAME

    def __init__(self, *, events_configured: bool, rest_configured: bool) -> None:
        self.events_configured = events_configured
        self.rest_configured = rest_configured

    def on_event(self, session: Session, event: Event) -> None:
        if event.kind not in (Kind.OPENED, Kind.REOPENED, Kind.RESOLVED, Kind.LEVEL_REACHED):
            return
        incident = session.get(Incident, event.incident_id)
        # A drill pages nobody: no trigger, no level change, no note.
        if incident is None or incident.drill_run_id is not None:
            return
        # A critical incident that fires again after it was resolved pages again: the
        # same dedup key opens a new PagerDuty incident once the old one is resolved.
        if event.kind in (Kind.OPENED, Kind.REOPENED) and self._pages(incident):
            self._enqueue(session, incident, EVENTS_KEY, Method.TRIGGER, _trigger(incident))
        elif event.kind == Kind.RESOLVED and self._pages(incident):
            self._enqueue(session, incident, EVENTS_KEY, Method.RESOLVE, _dedup(incident))
        elif event.kind == Kind.LEVEL_REACHED:
            self._level_reached(session, incident, event)

    def _pages(self, incident: Incident) -> bool:
        routes = routes_for(Severity(incident.severity), AlertSource(incident.source))
        return self.events_configured and Route.PAGERDUTY in routes

    def _level_reached(self, session: Session, incident: Incident, event: Event) -> None:
        level = int(event.fact("level", 0))
        pagerduty_level = event.fact("pagerduty_level")
        pagerduty_id = incident.pagerduty_incident_id
        # notify_pagerduty is false when PagerDuty itself moved the level (mirrored).
        if not (
            self.rest_configured
            and level > 1
            and event.fact("notify_pagerduty") is True
            and pagerduty_level
            and pagerduty_id
        ):
            return
        target = {"pagerduty_incident_id": pagerduty_id}
        self._enqueue(
            session, incident, REST_KEY, Method.LEVEL, {**target, "level": int(pagerduty_level)}
        )
        note = level_note(level, str(event.fact("role", "")), str(event.fact("reason", "")))
        self._enqueue(session, incident, REST_KEY, Method.NOTE, {**target, "content": note})

    @staticmethod
    def _enqueue(
        session: Session, incident: Incident, key: str, method: Method, payload: dict[str, Any]
    ) -> None:
        enqueue(
            session,
            output=OUTPUT_NAME,
            key=key,
            method=method,
            payload=payload,
            incident_id=incident.id,
        )


def _dedup(incident: Incident) -> dict[str, Any]:
    return {"dedup_key": incident.key[:255]}


def _trigger(incident: Incident) -> dict[str, Any]:
    labels = incident.labels or {}
    details: dict[str, Any] = {
        "incident": incident.id,
        "playbook": incident.playbook_id,
        **{name: labels[name] for name in _DETAIL_LABELS if name in labels},
    }
    return {
        **_dedup(incident),
        "summary": f"#{incident.id} {incident.title}"[:1024],
        "source": str(labels.get("service") or "nexus-bot"),
        "severity": "critical",
        "custom_details": details,
    }


@dataclass
class PagerDutyDelivery:
    """The queue's Sender for ``output="pagerduty"`` rows. Called from worker threads."""

    rest: PagerDutyRest | None
    events: PagerDutyEvents | None
    # Events API v2: 120 events/min per routing key; REST: 900 requests/min per account.
    rate: float = 2.0
    burst: int = 4

    def send(self, method: str, payload: Mapping[str, Any]) -> Result:
        try:
            call = self._call(method, payload)
        except (KeyError, TypeError, ValueError) as problem:
            # A row this code cannot read now will not be readable later either.
            return Failed(f"PagerDuty {method}: bad payload: {problem!r}")
        if isinstance(call, Failed):
            return call
        try:
            call()
        except NotifyError as error:
            return _outcome(error)
        return Sent()

    def close(self) -> None:
        for client in (self.rest, self.events):
            if client is not None:
                client.close()

    def _call(self, method: str, payload: Mapping[str, Any]) -> Callable[[], object] | Failed:
        if method in (Method.TRIGGER, Method.RESOLVE):
            events = self.events
            if events is None:
                return Failed("PagerDuty Events API not configured (PAGERDUTY_ROUTING_KEY)")
            key = str(payload["dedup_key"])
            if method == Method.RESOLVE:
                return lambda: events.resolve(key)
            summary, source = str(payload["summary"]), str(payload["source"])
            severity, details = str(payload["severity"]), dict(payload["custom_details"])
            return lambda: events.trigger(key, summary, source, severity, details)
        if method in (Method.LEVEL, Method.NOTE):
            rest = self.rest
            if rest is None:
                return Failed(
                    "PagerDuty REST API not configured (PAGERDUTY_API_TOKEN, PAGERDUTY_FROM_EMAIL)"
                )
            incident_id = str(payload["pagerduty_incident_id"])
            if method == Method.LEVEL:
                level = int(payload["level"])
                return lambda: rest.set_escalation_level(incident_id, level)
            content = str(payload["content"])
            return lambda: rest.add_note(incident_id, content)
        return Failed(f"PagerDuty: unknown method {method!r}")


def _outcome(error: NotifyError) -> Result:
    message = str(error)
    if error.status == 429:
        wait = _requested_wait(error)
        return Retry(message, after=DEFAULT_RATE_LIMIT_WAIT_S if wait is None else wait)
    if error.retryable:  # 5xx, no answer (network, timeout)
        return Retry(message)
    # Other 4xx (bad request, unknown incident, resolved already), an untrusted
    # certificate, a payload the adapter refused: the same call fails again.
    return Failed(message)


def _requested_wait(error: NotifyError) -> float | None:
    """Seconds the 429 answer asked for: ``Retry-After``, else PagerDuty's ``ratelimit-reset``.

    The adapter raises NotifyError ``from None`` so the library error (whose
    text holds part of the token) stays out of tracebacks; Python still keeps
    it as ``__context__``, and its response has the headers. Only they are read.
    """
    seen = error.__context__
    while seen is not None:
        if isinstance(seen, pagerduty.Error) and isinstance(seen.response, httpx2.Response):
            headers = seen.response.headers
            for name in ("Retry-After", "ratelimit-reset"):
                wait = delay_seconds(headers.get(name))
                if wait is not None:
                    return min(wait, MAX_RATE_LIMIT_WAIT_S)
            return None
        seen = seen.__context__
    return None


def pagerduty_output_from_settings(
    settings: Settings, *, verify: Verify | None = None
) -> tuple[PagerDutyOutput, PagerDutyDelivery]:
    """The output and its sender, from one decision about what is configured
    (`pagerduty_from_settings`), with clients that leave retrying to the queue."""
    rest, events = pagerduty_from_settings(
        settings, verify=verify, retries=QUEUE_RETRIES, backoff=QUEUE_BACKOFF_S
    )
    output = PagerDutyOutput(events_configured=events is not None, rest_configured=rest is not None)
    return output, PagerDutyDelivery(rest, events)
