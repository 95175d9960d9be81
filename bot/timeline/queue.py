"""The durable delivery queue shared by every output (the ``outbox`` table).

An output enqueues a row in the transaction of the event it renders; a
delivery worker (`bot.timeline.delivery` for most outputs, `bot.slack.outbox_worker`
for Slack, whose thread ordering is its own) sends it later with pacing,
retries, backoff and ``Retry-After``, exactly once across replicas (a
compare-and-set claim with a lease). Rows are ordered per (output, incident):
only the oldest pending row of an incident is ever sent.

Columns as used by non-Slack outputs: ``output`` (the output's name),
``channel`` (its pacing key, e.g. the SMTP host), ``method`` (what the sender
does, e.g. ``email.send``), ``payload`` (all the sender needs, JSON),
``coalesce_key`` (optional: a second row with the same key is not added while
one is pending).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.store.models import OutboxMessage, utcnow

_WAKE_KEY = "nexus_delivery_wake_pending"


@dataclass(frozen=True)
class Sent:
    """Delivered. `report`: facts for a DELIVERY_PROBLEM event (e.g. refused recipients)."""

    report: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Retry:
    """Try again later: after `after` seconds if the far end said so (not counted
    as an attempt, like HTTP 429), else with exponential backoff."""

    error: str
    after: float | None = None


@dataclass(frozen=True)
class Failed:
    """Permanent: never retried. `report` as for Sent."""

    error: str
    report: Mapping[str, Any] | None = field(default=None)


Result = Sent | Retry | Failed


class Sender(Protocol):
    """Delivers one row of one output. Synchronous: called in a worker thread."""

    rate: float  # deliveries per second per pacing key
    burst: int

    def send(self, method: str, payload: Mapping[str, Any]) -> Result: ...


def enqueue(
    session: Session,
    *,
    output: str,
    key: str,
    method: str,
    payload: Mapping[str, Any],
    incident_id: int | None = None,
    not_before: datetime | None = None,
    coalesce_key: str | None = None,
    priority: int = 0,
) -> bool:
    """Add a delivery in the caller's transaction; False if `coalesce_key` is pending already.

    `priority` 1 (a drill's) waits for 0 (a real incident's) on the same pacing key.
    """
    now = utcnow()
    if coalesce_key is not None:
        pending = session.execute(
            sa.select(OutboxMessage.id).where(
                OutboxMessage.output == output,
                OutboxMessage.coalesce_key == coalesce_key,
                OutboxMessage.state == "pending",
            )
        ).first()
        if pending is not None:
            return False
    session.execute(
        sa.insert(OutboxMessage).values(
            output=output,
            channel=key,
            method=method,
            incident_id=incident_id,
            coalesce_key=coalesce_key,
            payload=dict(payload),
            state="pending",
            attempts=0,
            next_attempt_at=max(now, not_before) if not_before is not None else now,
            created_at=now,
            priority=priority,
        )
    )
    wake_after_commit(session, output)
    return True


# Delivery workers of this process, by the outputs they deliver: woken after a
# transaction that enqueued for one of those outputs commits (not before: they
# would find nothing), and only those, so a storm of Slack rows wakes no mailer.
_WAKERS: dict[str, weakref.WeakSet[Any]] = {}


def register_waker(worker: Any, outputs: Iterable[str]) -> None:
    """`worker.wake()` is called (from any thread) after a commit that enqueued for `outputs`."""
    for output in outputs:
        _WAKERS.setdefault(output, weakref.WeakSet()).add(worker)


def unregister_waker(worker: Any) -> None:
    for workers in _WAKERS.values():
        workers.discard(worker)


def wake_workers(outputs: Iterable[str]) -> None:
    woken: set[int] = set()
    for output in outputs:
        for worker in list(_WAKERS.get(output, ())):
            if id(worker) not in woken:
                woken.add(id(worker))
                worker.wake()


def wake_after_commit(session: Session, output: str) -> None:
    """Wake the workers of `output` once this session's transaction commits (once each)."""
    pending: set[str] | None = session.info.get(_WAKE_KEY)
    if pending is not None:
        pending.add(output)
        return
    outputs = session.info[_WAKE_KEY] = {output}

    def on_commit(s: Session) -> None:
        s.info.pop(_WAKE_KEY, None)
        wake_workers(outputs)

    # Sessions live for one transaction here (Repository.session), so a rolled-back
    # one never commits and the listener dies with it.
    sa.event.listen(session, "after_commit", on_commit, once=True)


ReportHook = Callable[[Session, int | None, str, Mapping[str, Any]], None]
"""Called in the transaction that settles a row: (session, incident_id, output, report)."""
