"""The outbox reads and writes of `bot.timeline.delivery`: heads, claims, settlements.

Every write is a compare-and-set on the row's state (and attempts), so two
replicas never both claim a row nor both settle it; the worker decides what to
write, this module only writes it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.store.db import READ_ONLY_OPTIONS
from bot.store.models import OutboxMessage, utcnow
from bot.timeline.queue import ReportHook

_OUTBOX = cast(sa.Table, OutboxMessage.__table__)


@dataclass(frozen=True)
class Candidate:
    """The head row of an (output, incident) or an (output, channel), due now."""

    id: int
    output: str
    incident_id: int | None
    channel: str  # the pacing key within the output
    attempts: int


@dataclass(frozen=True)
class Claimed:
    id: int
    output: str
    incident_id: int | None
    method: str
    payload: Mapping[str, Any]
    attempts: int  # after the claim
    created_at: datetime
    claimed_at: float  # time.monotonic(); the lease runs from here


@dataclass(frozen=True)
class Settlement:
    """How a claimed row ends (or waits): the column values to write and the report."""

    claimed: Claimed
    outcome: str  # sent | permanent | max_attempts | retry_after | backoff
    values: dict[str, Any]
    report: Mapping[str, Any] | None = None
    error: str | None = None
    delay: float = 0.0  # seconds until the row is due again (retries)

    @property
    def final(self) -> bool:
        return self.outcome in ("sent", "permanent", "max_attempts")


@dataclass(frozen=True)
class HeadScan:
    due: list[Candidate]
    pending: dict[str, int]  # output -> pending rows
    next_due_in: float | None = field(default=None)  # seconds until a held-back head is due


class ReportHookFailed(Exception):
    """on_report raised; the settling transaction was rolled back with it."""


def _rowcount(result: sa.Result[Any]) -> int:
    return cast(sa.CursorResult[Any], result).rowcount


def scan_heads(engine: sa.Engine, outputs: Collection[str], skip: Collection[int]) -> HeadScan:
    """Only the oldest pending row of each (output, incident) may go, and rows
    without an incident are ordered per (output, channel): one group by, not a
    scan of every pending row. Heads in `skip` or not due yet are left out."""
    o = _OUTBOX
    if not outputs:
        return HeadScan([], {})
    mine = (o.c.state == "pending", o.c.output.in_(list(outputs)))
    loose_channel = sa.case((o.c.incident_id.is_(None), o.c.channel), else_=sa.null())
    heads = (
        sa.select(sa.func.min(o.c.id))
        .where(*mine)
        .group_by(o.c.output, o.c.incident_id, loose_channel)
    )
    query = (
        sa.select(
            o.c.id, o.c.output, o.c.incident_id, o.c.channel, o.c.attempts, o.c.next_attempt_at
        )
        .where(o.c.id.in_(heads))
        # Real incidents' heads before a drill's (priority 1); heads only, so
        # an incident's own rows still go in id order.
        .order_by(o.c.priority, o.c.id)
    )
    counts = sa.select(o.c.output, sa.func.count()).where(*mine).group_by(o.c.output)
    with engine.execution_options(**READ_ONLY_OPTIONS).connect() as conn:
        rows = conn.execute(query).all()
        pending = {str(output): int(n) for output, n in conn.execute(counts).all()}

    now, due, waits = utcnow(), [], []
    for row in rows:
        if row.id in skip:
            continue
        if row.next_attempt_at > now:
            waits.append((row.next_attempt_at - now).total_seconds())
            continue
        due.append(Candidate(row.id, row.output, row.incident_id, row.channel, row.attempts))
    return HeadScan(due, pending, min(waits, default=None))


def claim(
    engine: sa.Engine, cand: Candidate, lease_seconds: float, claimed_at: float
) -> Claimed | None:
    """Compare-and-set claim (None: another worker won it, or the row changed since
    the scan); the payload is read after winning it, in the claim's transaction."""
    o, now = _OUTBOX, utcnow()
    with engine.begin() as conn:
        won = conn.execute(
            sa.update(o)
            .where(
                o.c.id == cand.id,
                o.c.state == "pending",
                o.c.attempts == cand.attempts,
                o.c.next_attempt_at <= now,
            )
            .values(
                attempts=o.c.attempts + 1,
                next_attempt_at=now + timedelta(seconds=lease_seconds),
                **({"first_attempt_at": now} if cand.attempts == 0 else {}),
            )
        )
        if _rowcount(won) != 1:
            return None
        row = conn.execute(
            sa.select(o.c.method, o.c.payload, o.c.created_at).where(o.c.id == cand.id)
        ).one()
    return Claimed(
        id=cand.id,
        output=cand.output,
        incident_id=cand.incident_id,
        method=row.method,
        payload=dict(row.payload or {}),
        attempts=cand.attempts + 1,
        created_at=row.created_at,
        claimed_at=claimed_at,
    )


def fail_unclaimed(engine: sa.Engine, cand: Candidate, error: str) -> bool:
    """Fail a head that was not claimed (e.g. its claims kept expiring); False if it changed."""
    o = _OUTBOX
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(o)
            .where(o.c.id == cand.id, o.c.state == "pending", o.c.attempts == cand.attempts)
            .values(state="failed", last_error=error)
        )
    return _rowcount(result) == 1


def write_settlement(
    engine: sa.Engine, settlement: Settlement, on_report: ReportHook | None
) -> bool:
    """Write the outcome and hand its report to `on_report`, in one transaction.

    False if the claim was lost (the lease ran out and another claim settled or
    retook the row): then nothing is written and no report is made. A delivery
    is recorded even when only the lease ran out: the far end has it.
    """
    o, claimed = _OUTBOX, settlement.claimed
    where = [o.c.id == claimed.id, o.c.state == "pending"]
    if settlement.outcome != "sent":
        where.append(o.c.attempts == claimed.attempts)
    with Session(engine) as session, session.begin():
        changed = _rowcount(session.execute(sa.update(o).where(*where).values(settlement.values)))
        if changed and settlement.report is not None and on_report is not None:
            try:
                on_report(session, claimed.incident_id, claimed.output, settlement.report)
            except Exception as exc:
                raise ReportHookFailed(str(exc)) from exc  # rolls the state back too
    return changed == 1


def pending_deliveries(engine: sa.Engine, output: str) -> int:
    """Rows of `output` waiting to be delivered (for probes and tests)."""
    with engine.execution_options(**READ_ONLY_OPTIONS).connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(_OUTBOX)
                .where(_OUTBOX.c.output == output, _OUTBOX.c.state == "pending")
            ).scalar_one()
        )
