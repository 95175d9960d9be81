"""Record timeline events and hand each one to every registered output.

`Timeline.record` inserts the event row in the caller's transaction and lets
each output enqueue its deliveries in that same transaction: an event exists
exactly when the state change that caused it commits, and so do the messages,
emails and pages it causes. Outputs must not do I/O here, only enqueue.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.store.models import Incident, TimelineEvent, utcnow
from bot.timeline.events import PUBLIC_KINDS, Event, Kind


class Output(Protocol):
    """An audience's medium: Slack thread, email, PagerDuty, status page, ..."""

    name: str

    def on_event(self, session: Session, event: Event) -> None:
        """Enqueue what this output sends for `event` (in the caller's transaction)."""


class Timeline:
    def __init__(self, outputs: Iterable[Output] = ()) -> None:
        self._outputs: list[Output] = []
        for output in outputs:
            self.register(output)  # one per name: a second would deliver every event twice

    @property
    def outputs(self) -> Sequence[Output]:
        return tuple(self._outputs)

    def register(self, output: Output) -> None:
        if any(o.name == output.name for o in self._outputs):
            raise ValueError(f"output {output.name!r} is registered already")
        self._outputs.append(output)

    def record(
        self,
        session: Session,
        incident_id: int,
        kind: Kind | str,
        actor: str,
        *,
        at: datetime | None = None,
        public: bool | None = None,
        **facts: Any,
    ) -> Event:
        kind = str(kind)
        when = at or utcnow()
        shown = kind in PUBLIC_KINDS if public is None else public
        if shown and _is_drill(session, incident_id):
            shown = False  # a drill never reaches customers, whatever happened in it
        row_id = session.execute(
            sa.insert(TimelineEvent)
            .values(
                incident_id=incident_id,
                kind=kind,
                actor=actor,
                public=shown,
                facts=facts,
                at=when,
            )
            .returning(TimelineEvent.id)
        ).scalar_one()
        event = Event(incident_id, kind, actor, when, dict(facts), shown, int(row_id))
        for output in self._outputs:
            output.on_event(session, event)
        return event


def _is_drill(session: Session, incident_id: int) -> bool:
    incident = session.get(Incident, incident_id)  # usually in the session already
    return incident is not None and incident.drill_run_id is not None


def read_timeline(
    session: Session, incident_id: int, *, public_only: bool = False, limit: int | None = None
) -> list[Event]:
    """An incident's events, oldest first (the newest `limit` when given)."""
    query = sa.select(TimelineEvent).where(TimelineEvent.incident_id == incident_id)
    if public_only:
        query = query.where(TimelineEvent.public.is_(True))
    query = query.order_by(TimelineEvent.id.desc())
    if limit is not None:
        query = query.limit(limit)
    rows = list(session.scalars(query))
    rows.reverse()
    return [
        Event(r.incident_id, r.kind, r.actor, r.at, dict(r.facts or {}), r.public, r.id)
        for r in rows
    ]
