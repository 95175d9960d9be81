"""The database side of Slack delivery: which rows are due, claiming one, recording the outcome.

`OutboxStore` is what `bot.slack.outbox_worker.OutboxWorker` asks between its
Slack calls. It only ever reads or changes rows with ``output = 'slack'``:
rows of other outputs share the table and the incident but are
`bot.timeline.delivery`'s, so they neither are sent nor hold back Slack rows.

* `OutboxStore.due`: the head row of each incident (a pending root post
  first, then id order, and only once the root has a ts) and of each
  channel's loose messages, if its ``next_attempt_at`` has come; real
  incidents' heads before a drill's (``priority``), then by `_rank` and id.
* `OutboxStore.claim`: compare-and-set on ``(state, attempts,
  next_attempt_at)``; the payload is read after winning, in the claim's
  transaction, and the thread ts (replies), root ts (updates) or the keyed
  reply's ts (edits) is filled in then.
* `OutboxStore.record_success` / `record_failure`: mark it sent (a root's ts
  becomes ``incidents.slack_root_ts`` in the same transaction), give the
  attempt back after a 429, back off, or fail it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
import structlog
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.dialects import postgresql, sqlite

from bot.metrics import REGISTRY
from bot.slack.delivery_lookup import Delivery
from bot.slack.outbox_rows import (
    INCIDENTS,
    OUTBOX,
    OUTPUT,
    RENDER,
    RENDER_ROOT,
    Kind,
    edited_key,
    row_kind,
)
from bot.slack.slack_calls import Failure
from bot.store.db import READ_ONLY_OPTIONS
from bot.store.models import SlackPace, utcnow

__all__ = [
    "Candidate",
    "Claimed",
    "Due",
    "OutboxStore",
    "Paced",
    "RootRenderer",
    "Success",
    "pending_count",
]

log = structlog.get_logger("bot.slack.outbox")

PACE = cast(sa.Table, SlackPace.__table__)


def pace_key(method: str, channel: str) -> str:
    return f"{method}:{channel}"


# (the claim's connection, incident id) -> the root's (text, blocks), or None
# when the incident is gone; see `RENDER_ROOT`.
RootRenderer = Callable[[sa.Connection, int], tuple[str, list[dict[str, Any]]] | None]

OUTBOX_PENDING = Gauge(
    "nexus_outbox_pending",
    "Slack outbox rows waiting to be delivered (as of this replica's last pass).",
    registry=REGISTRY,
)
OUTBOX_FAILED = Counter(
    "nexus_outbox_failed_total",
    "Outbox rows given up on, by reason (Slack error code or max_attempts).",
    ["reason"],
    registry=REGISTRY,
)
OUTBOX_DELIVERY_SECONDS = Histogram(
    "nexus_outbox_delivery_seconds",
    "Time from enqueue to delivery of an outbox message.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
    registry=REGISTRY,
)


@dataclass(frozen=True)
class Candidate:
    id: int
    incident_id: int | None
    kind: Kind
    method: str
    channel: str  # pacing key
    attempts: int
    rank: int = 2  # lower goes first within a channel; see _rank
    # outbox.priority; lower goes first within a channel, before rank: a drill's
    # rows (1) wait for every real incident's (0), roots included.
    priority: int = 0


@dataclass(frozen=True)
class Due:
    candidates: list[Candidate]  # in the order to try them
    next_in: float | None  # seconds until the soonest row in backoff is due


@dataclass(frozen=True)
class Claimed:
    id: int
    incident_id: int | None
    kind: Kind
    method: str
    attempts: int  # after the claim
    kwargs: dict[str, Any]
    created_at: datetime
    first_attempt_at: datetime | None = None
    claimed_at: float = 0.0  # time.monotonic() at the claim; the lease runs from here

    @property
    def delivery(self) -> Delivery:
        return Delivery(self.id, self.created_at, self.kind, self.incident_id)


@dataclass(frozen=True)
class Success:
    claimed: Claimed
    ts: str | None
    channel: str | None
    adopted: bool = False  # found in Slack after a lost answer, not posted now


class _NotReady(Exception):
    """Raised inside a claim's transaction to roll it back."""


@dataclass(frozen=True)
class Paced:
    """Not claimed: the channel's shared pace (`SlackPace`) allows the next call in ``wait`` s."""

    wait: float


class _Paced(_NotReady):
    def __init__(self, wait: float) -> None:
        super().__init__()
        self.wait = wait


def _rank(kind: Kind, source: str | None) -> int:
    """What a channel sends first when it is paced: a new incident must be seen
    before more details of old ones, and an incident that pages (PagerDuty) first."""
    if kind == "root":
        return 0 if source == "pagerduty" else 1
    return 2


class OutboxStore:
    """Reads and writes Slack outbox rows for one worker."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        max_attempts: int,
        lease_seconds: float,
        backoff: Callable[[int], float],
        render_root: RootRenderer | None = None,
        pace: tuple[float, int] | None = None,
    ) -> None:
        self.engine = engine
        self.render_root = render_root
        # (calls per second, burst) per method and channel, shared by replicas;
        # None: each replica's own pace only (tests of other things).
        self.pace = pace
        self._read_engine = engine.execution_options(**READ_ONLY_OPTIONS)
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self._backoff = backoff  # attempts so far -> seconds to wait

    # -- what is due ---------------------------------------------------------

    def due(self, skip: Container[int] = ()) -> Due:
        """The head row of each incident (and of each channel's loose messages) that is due.

        ``skip``: rows Slack has but whose success is not written yet.
        """
        o, i = OUTBOX, INCIDENTS
        query = (
            sa.select(
                o.c.id,
                o.c.incident_id,
                o.c.method,
                o.c.coalesce_key,
                o.c.channel,
                o.c.attempts,
                o.c.next_attempt_at,
                o.c.priority,
                i.c.slack_channel,
                i.c.slack_root_ts,
                i.c.source,
            )
            .select_from(o.outerjoin(i, i.c.id == o.c.incident_id))
            .where(o.c.output == OUTPUT, o.c.state == "pending")
            .order_by(o.c.id)
        )
        with self._read_engine.connect() as conn:
            rows = conn.execute(query).all()
        OUTBOX_PENDING.set(len(rows))

        heads: dict[tuple[str, Any], Any] = {}
        roots: dict[int, Any] = {}
        for row in rows:
            kind = row_kind(row.method, row.incident_id, row.coalesce_key)
            if kind == "message":
                heads.setdefault(("channel", row.channel), row)
                continue
            if kind == "root":
                roots.setdefault(row.incident_id, row)
            heads.setdefault(("incident", row.incident_id), row)

        now = utcnow()
        next_in: float | None = None
        candidates = []
        for (scope, key), head in heads.items():
            row = head
            if scope == "incident":
                # A pending root post goes first; the rest need the root's ts.
                row = roots.get(key, head)
                kind = row_kind(row.method, row.incident_id, row.coalesce_key)
                if kind != "root" and not row.slack_root_ts:
                    continue
            else:
                kind = "message"
            if row.id in skip:
                continue
            if row.next_attempt_at > now:
                wait = (row.next_attempt_at - now).total_seconds()
                next_in = wait if next_in is None else min(next_in, wait)
                continue
            channel = row.channel
            if kind in ("reply", "update", "edit") and row.slack_channel:
                channel = row.slack_channel
            candidates.append(
                Candidate(
                    row.id,
                    row.incident_id,
                    kind,
                    row.method,
                    channel,
                    row.attempts,
                    _rank(kind, row.source),
                    row.priority,
                )
            )
        # Only heads are sorted, so an incident's own rows keep their id order.
        candidates.sort(key=lambda c: (c.priority, c.rank, c.id))
        return Due(candidates, next_in)

    # -- claiming ------------------------------------------------------------

    def claim(self, cand: Candidate) -> Claimed | Paced | None:
        """Compare-and-set claim; the payload is read after winning it.

        None: another worker won, the row is not ready after all, or it was
        failed here (out of attempts, an edit of a reply that was never sent).
        Paced: another replica took the channel's next slot.
        """
        try:
            return self._claim_in_transaction(cand)
        except _Paced as paced:
            return Paced(paced.wait)
        except _NotReady:
            return None

    def _take_slot(self, conn: sa.Connection, key: str, now: datetime) -> None:
        """Take the next call of `key` from the shared pace, or raise _Paced."""
        if self.pace is None:
            return
        rate, burst = self.pace
        interval = timedelta(seconds=1 / rate)
        postgres = self.engine.dialect.name == "postgresql"
        insert = postgresql.insert(PACE) if postgres else sqlite.insert(PACE)
        conn.execute(insert.values(key=key, tat=now).on_conflict_do_nothing())
        query = sa.select(PACE.c.tat).where(PACE.c.key == key)
        if postgres:
            query = query.with_for_update()  # replicas queue here for this channel only
        tat = max(conn.execute(query).scalar_one(), now)
        allowed_at = tat - interval * (burst - 1)
        if allowed_at > now:
            raise _Paced((allowed_at - now).total_seconds())
        conn.execute(sa.update(PACE).where(PACE.c.key == key).values(tat=tat + interval))

    def hold_pace(self, key: str, seconds: float) -> None:
        """After a 429: every replica waits for Slack's Retry-After on this channel."""
        if self.pace is None:
            return
        until = utcnow() + timedelta(seconds=seconds)
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(PACE).where(PACE.c.key == key, PACE.c.tat < until).values(tat=until)
            )

    def _claim_in_transaction(self, cand: Candidate) -> Claimed | None:
        o, i = OUTBOX, INCIDENTS
        now, claimed_at = utcnow(), time.monotonic()
        with self.engine.begin() as conn:
            if cand.attempts >= self.max_attempts:
                # Its claims kept expiring (a worker dying on it each time).
                self._fail_unsent(
                    conn, cand, cand.attempts, "max_attempts", "max_attempts (claims expired)"
                )
                return None
            claimed = conn.execute(
                sa.update(o)
                .where(
                    o.c.id == cand.id,
                    o.c.output == OUTPUT,
                    o.c.state == "pending",
                    o.c.attempts == cand.attempts,
                    o.c.next_attempt_at <= now,
                )
                .values(
                    attempts=o.c.attempts + 1,
                    next_attempt_at=now + timedelta(seconds=self.lease_seconds),
                    # attempts = 0: no earlier attempt can have reached Slack.
                    **({"first_attempt_at": now} if cand.attempts == 0 else {}),
                )
            )
            if cast(sa.CursorResult[Any], claimed).rowcount != 1:
                return None
            row = conn.execute(
                sa.select(
                    o.c.payload,
                    o.c.channel,
                    o.c.thread_ts,
                    o.c.coalesce_key,
                    o.c.created_at,
                    o.c.first_attempt_at,
                    i.c.slack_channel,
                    i.c.slack_root_ts,
                )
                .select_from(o.outerjoin(i, i.c.id == o.c.incident_id))
                .where(o.c.id == cand.id)
            ).one()
            kwargs: dict[str, Any] = dict(row.payload or {})
            if kwargs.pop(RENDER, None) == RENDER_ROOT and cand.incident_id is not None:
                self._render_root(conn, cand.incident_id, kwargs)
            kwargs["channel"] = row.channel
            if cand.kind in ("reply", "update", "edit"):
                if not row.slack_root_ts:
                    raise _NotReady  # the root vanished since the snapshot: undo the claim
                kwargs["channel"] = row.slack_channel or row.channel
            if cand.kind == "reply":
                kwargs["thread_ts"] = row.slack_root_ts
            elif cand.kind == "update":
                kwargs["ts"] = row.slack_root_ts
            elif cand.kind == "edit":
                edited_ts = self._edited_ts(conn, cand, edited_key(row.coalesce_key))
                if edited_ts is None:
                    return None  # failed for good, in this transaction
                kwargs["ts"] = edited_ts
            elif cand.kind == "message" and row.thread_ts:
                kwargs["thread_ts"] = row.thread_ts
            self._take_slot(conn, pace_key(cand.method, kwargs["channel"]), now)
        return Claimed(
            id=cand.id,
            incident_id=cand.incident_id,
            kind=cand.kind,
            method=cand.method,
            attempts=cand.attempts + 1,
            kwargs=kwargs,
            created_at=row.created_at,
            first_attempt_at=row.first_attempt_at,
            claimed_at=claimed_at,
        )

    def _render_root(self, conn: sa.Connection, incident_id: int, kwargs: dict[str, Any]) -> None:
        """The root as the incident is now, read in the claim's transaction; the
        stored fallback text stays if it cannot be rendered (sent rather than lost)."""
        if self.render_root is None:
            return
        try:
            with conn.begin_nested():
                content = self.render_root(conn, incident_id)
        except Exception:
            log.exception("outbox_root_render_failed", incident_id=incident_id)
            return
        if content is not None:
            kwargs["text"], kwargs["blocks"] = content

    def _edited_ts(self, conn: sa.Connection, cand: Candidate, key: str) -> str | None:
        """The ts of the reply an edit row edits: the newest reply of the incident
        keyed ``key`` enqueued before the edit. None (the edit row failed) if
        that reply does not exist or was not sent."""
        o = OUTBOX
        target = conn.execute(
            sa.select(o.c.id, o.c.state, o.c.result_ts, o.c.last_error)
            .where(
                o.c.output == OUTPUT,
                o.c.incident_id == cand.incident_id,
                o.c.coalesce_key == key,
                o.c.id < cand.id,
            )
            .order_by(o.c.id.desc())
            .limit(1)
        ).first()
        if target is None:
            error = f"edit_target_missing: no reply keyed {key!r} was enqueued before this edit"
            self._fail_unsent(conn, cand, cand.attempts + 1, "edit_target_missing", error)
            return None
        if target.state == "pending":
            # Cannot happen while the edit waits behind it in id order; if it
            # does (a race with another replica), wait for the reply.
            raise _NotReady
        if target.state != "sent" or not target.result_ts:
            detail = f" ({target.last_error})" if target.last_error else ""
            error = (
                f"edit_target_not_sent: reply keyed {key!r} (outbox row {target.id}) "
                f"is {target.state} without a ts{detail}"
            )
            self._fail_unsent(conn, cand, cand.attempts + 1, "edit_target_not_sent", error)
            return None
        return str(target.result_ts)

    def _fail_unsent(
        self, conn: sa.Connection, cand: Candidate, attempts: int, reason: str, error: str
    ) -> None:
        """Give up on a row before any call is made for it (in the claim's transaction).

        ``attempts``: as this worker left it; another value means another worker has it.
        """
        o = OUTBOX
        failed = conn.execute(
            sa.update(o)
            .where(o.c.id == cand.id, o.c.state == "pending", o.c.attempts == attempts)
            .values(state="failed", last_error=error)
        )
        if cast(sa.CursorResult[Any], failed).rowcount != 1:
            return
        OUTBOX_FAILED.labels(reason).inc()
        log.error(
            "outbox_failed",
            outbox_id=cand.id,
            incident_id=cand.incident_id,
            reason=reason,
            error=error,
        )

    # -- recording -----------------------------------------------------------

    def record_success(self, success: Success) -> None:
        claimed, now = success.claimed, utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(OUTBOX)
                .where(OUTBOX.c.id == claimed.id, OUTBOX.c.state == "pending")
                .values(state="sent", sent_at=now, result_ts=success.ts, last_error=None)
            )
            if claimed.kind == "root" and success.ts:
                conn.execute(
                    sa.update(INCIDENTS)
                    .where(INCIDENTS.c.id == claimed.incident_id)
                    .values(
                        slack_channel=success.channel or claimed.kwargs["channel"],
                        slack_root_ts=success.ts,
                        updated_at=now,
                    )
                )
        OUTBOX_DELIVERY_SECONDS.observe(max(0.0, (now - claimed.created_at).total_seconds()))

    def record_failure(self, claimed: Claimed, failure: Failure) -> None:
        now = utcnow()
        cas = (
            OUTBOX.c.id == claimed.id,
            OUTBOX.c.state == "pending",
            OUTBOX.c.attempts == claimed.attempts,
        )
        fields = {
            "outbox_id": claimed.id,
            "method": claimed.method,
            "incident_id": claimed.incident_id,
        }
        if failure.kind == "ratelimited":
            # Not the message's fault: give the attempt back, wait as told.
            values: dict[str, Any] = {
                "attempts": claimed.attempts - 1,
                "next_attempt_at": now + timedelta(seconds=failure.retry_after),
            }
            log.info("outbox_ratelimited", retry_after=failure.retry_after, **fields)
        elif failure.kind == "permanent" or claimed.attempts >= self.max_attempts:
            reason = failure.error if failure.kind == "permanent" else "max_attempts"
            values = {"state": "failed", "last_error": failure.error}
            OUTBOX_FAILED.labels(reason).inc()
            log.error(
                "outbox_failed",
                error=failure.error,
                reason=reason,
                attempts=claimed.attempts,
                channel=claimed.kwargs.get("channel"),
                **fields,
            )
        else:
            delay = self._backoff(claimed.attempts)
            values = {
                "next_attempt_at": now + timedelta(seconds=delay),
                "last_error": failure.error,
            }
            log.warning(
                "outbox_retry",
                error=failure.error,
                attempts=claimed.attempts,
                retry_in=round(delay, 3),
                **fields,
            )
        with self.engine.begin() as conn:
            conn.execute(sa.update(OUTBOX).where(*cas).values(**values))


def pending_count(
    engine: sa.Engine, states: Iterable[str] = ("pending",), output: str | None = OUTPUT
) -> int:
    """Rows in the given states, of ``output`` (None: of every output); for probes and tests."""
    query = sa.select(sa.func.count()).select_from(OUTBOX).where(OUTBOX.c.state.in_(list(states)))
    if output is not None:
        query = query.where(OUTBOX.c.output == output)
    with engine.execution_options(**READ_ONLY_OPTIONS).connect() as conn:
        return int(conn.execute(query).scalar_one())
