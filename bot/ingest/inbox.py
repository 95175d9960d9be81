"""The webhook inbox: accept a body durably in one short transaction, apply it later.

Why: applying an Alertmanager batch (grouping, incidents, thread, root edits,
escalation) costs far more than storing it, and a sender waiting for all of
that is what made acks slow in a storm. So a webhook answers 202 once its raw
body is committed here (durable: a crash after the answer loses nothing), and
the `InboxWorker` applies rows one at a time, PagerDuty before Alertmanager,
oldest first, deleting each row once applied.

Applying is at-least-once: a crash between applying and deleting applies the
row again on restart, which the appliers tolerate (alerts deduplicate on
fingerprint + startsAt + status, incidents open by key, the thread is claimed by
compare-and-set, status changes are compare-and-set). A row that keeps failing
is retried with backoff and finally kept as ``failed`` with its error.
Several replicas share the table: a claim is a lease, like the outbox's.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session

from bot import metrics
from bot.store.models import InboxBatch, utcnow
from bot.store.outage import OutageLog
from bot.store.repository import first_delivery

log = structlog.get_logger("bot.ingest.inbox")

_INBOX = cast(sa.Table, InboxBatch.__table__)

# PagerDuty incidents page people; bulk alerts can wait a moment behind them, and
# drills behind both.
PRIORITY = {"pagerduty": 0, "alertmanager": 1, "drill": 2}  # a drill waits for real alerts
# Applying a row takes milliseconds; a crashed claimer's row is retried after this.
# (Applying twice is harmless, see above, so short beats long here.)
LEASE = timedelta(seconds=15)
MAX_ATTEMPTS = 8


class Put(enum.Enum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"  # this delivery id was accepted before
    FULL = "full"  # over the backlog: answer 503, the sender retries


@dataclass(frozen=True)
class Claimed:
    id: int
    source: str
    body: str
    attempts: int
    received_at: Any


class Inbox:
    """Rows in the ``inbox`` table: put, claim, finish, fail."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"

    def put(
        self,
        source: str,
        body: str,
        alert_count: int,
        group_key: str = "",
        delivery: str | None = None,
        max_backlog: int | None = None,
    ) -> Put:
        """Store one accepted body; one transaction, committed on return."""
        now = utcnow()
        with self.engine.begin() as conn:
            if max_backlog is not None:
                waiting = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(_INBOX)
                    # priority stands for the source here, so ix_inbox_next covers it
                    .where(_INBOX.c.state == "pending", _INBOX.c.priority == PRIORITY[source])
                ).scalar_one()
                if waiting >= max_backlog:
                    return Put.FULL
            if delivery and not first_delivery(conn, source, delivery, now):
                return Put.DUPLICATE
            conn.execute(
                sa.insert(_INBOX).values(
                    source=source,
                    priority=PRIORITY[source],
                    body=body,
                    group_key=f"{source}:{group_key}",
                    alert_count=alert_count,
                    state="pending",
                    attempts=0,
                    not_before=now,
                    received_at=now,
                )
            )
        return Put.QUEUED

    def claim(self) -> Claimed | None:
        """The next due row (PagerDuty first, then oldest), leased to this process.

        Only the oldest pending row of its group can be claimed: while an earlier
        row of the group is leased elsewhere or backing off, the group waits.
        """
        now = utcnow()
        with self.engine.begin() as conn:
            head = conn.execute(self._due_heads(now, 1, _INBOX.c.id, _INBOX.c.attempts)).first()
            if head is None:
                return None
            if head.attempts >= MAX_ATTEMPTS:
                # Its leases kept expiring: something kills the process on it.
                self._give_up(conn, head.id, "max attempts (claims expired)")
                return None
            won = conn.execute(
                sa.update(_INBOX)
                .where(_INBOX.c.id == head.id, _INBOX.c.attempts == head.attempts)
                .values(attempts=head.attempts + 1, not_before=now + LEASE)
            )
            if cast(sa.CursorResult[Any], won).rowcount != 1:
                return None
            row = conn.execute(
                sa.select(_INBOX.c.source, _INBOX.c.body, _INBOX.c.received_at).where(
                    _INBOX.c.id == head.id
                )
            ).one()
        return Claimed(head.id, row.source, row.body, head.attempts + 1, row.received_at)

    def heads(self, session: Session, limit: int) -> list[Claimed]:
        """Up to `limit` due rows, each the oldest pending row of its group, in claim
        order, read in the caller's transaction (PostgreSQL: locked, others' skipped).

        For applying several rows and deleting them in that one transaction: no
        lease is written, because a process that dies mid-way rolls the whole
        transaction back, and the rows are simply still there.
        """
        c = _INBOX.c
        query = self._due_heads(utcnow(), limit, c.id, c.source, c.body, c.attempts, c.received_at)
        return [
            Claimed(r.id, r.source, r.body, r.attempts, r.received_at)
            for r in session.execute(query)
        ]

    def _due_heads(self, now: Any, limit: int, *columns: sa.ColumnElement[Any]) -> sa.Select[Any]:
        """Due pending rows that are the oldest pending row of their group, in claim
        order (PagerDuty first, then oldest); on PostgreSQL locked, others' skipped."""
        earlier = _INBOX.alias("earlier")
        query = (
            sa.select(*columns)
            .where(
                _INBOX.c.state == "pending",
                _INBOX.c.not_before <= now,
                ~sa.exists().where(
                    earlier.c.group_key == _INBOX.c.group_key,
                    earlier.c.id < _INBOX.c.id,
                    earlier.c.state == "pending",
                ),
            )
            .order_by(_INBOX.c.priority, _INBOX.c.id)
            .limit(limit)
        )
        if self.postgres:
            # Replicas skip each other's rows instead of queueing on them; of=: lock
            # the rows taken, not the NOT EXISTS subquery's.
            query = query.with_for_update(skip_locked=True, of=_INBOX)
        return query

    @staticmethod
    def delete(session: Session, ids: list[int]) -> None:
        session.execute(sa.delete(_INBOX).where(_INBOX.c.id.in_(ids)))

    def finish(self, claimed: Claimed) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(_INBOX).where(_INBOX.c.id == claimed.id))

    def fail(self, claimed: Claimed, error: str) -> None:
        """Retry later with backoff; after MAX_ATTEMPTS keep it as failed."""
        with self.engine.begin() as conn:
            if claimed.attempts >= MAX_ATTEMPTS:
                self._give_up(conn, claimed.id, error)
                return
            delay = timedelta(seconds=min(2**claimed.attempts, 300))
            conn.execute(
                sa.update(_INBOX)
                .where(_INBOX.c.id == claimed.id)
                .values(not_before=utcnow() + delay, last_error=error[:2000])
            )

    def _give_up(self, conn: sa.Connection, batch_id: int, error: str) -> None:
        conn.execute(
            sa.update(_INBOX)
            .where(_INBOX.c.id == batch_id)
            .values(state="failed", last_error=error[:2000])
        )
        metrics.INBOX_FAILED.inc()
        log.error("inbox batch failed for good; kept for inspection", batch=batch_id, error=error)

    def failed(self, limit: int = 50) -> list[Any]:
        """The rows given up on, oldest first: id, source, received_at, attempts, last_error."""
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(
                        _INBOX.c.id,
                        _INBOX.c.source,
                        _INBOX.c.received_at,
                        _INBOX.c.attempts,
                        _INBOX.c.alert_count,
                        _INBOX.c.last_error,
                    )
                    .where(_INBOX.c.state == "failed")
                    .order_by(_INBOX.c.id)
                    .limit(limit)
                )
            )

    def retry(self, ids: list[int] | None) -> list[int]:
        """Put failed rows (these ids, or all when None) back in line; the ids requeued."""
        where = [_INBOX.c.state == "failed"]
        if ids is not None:
            where.append(_INBOX.c.id.in_(ids))
        with self.engine.begin() as conn:
            found = [row.id for row in conn.execute(sa.select(_INBOX.c.id).where(*where))]
            if found:
                conn.execute(
                    sa.update(_INBOX)
                    .where(_INBOX.c.id.in_(found), _INBOX.c.state == "failed")
                    .values(state="pending", attempts=0, not_before=utcnow())
                )
        return sorted(found)

    def counts(self) -> dict[str, int]:
        """Rows by state, e.g. {"pending": 3, "failed": 0}."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(_INBOX.c.state, sa.func.count()).group_by(_INBOX.c.state)
            ).all()
        found = {state: int(n) for state, n in rows}
        return {"pending": found.get("pending", 0), "failed": found.get("failed", 0)}


# (stored body, redelivered): redelivered when an earlier attempt may have applied
# part of it before its process died or it failed.
Applier = Callable[[str, bool], object]


@dataclass(frozen=True)
class SessionApplier:
    """Applies one source's rows in a transaction the worker opens (see `InboxWorker`)."""

    source: str
    session: Callable[[], AbstractContextManager[Session]]
    apply: Callable[[Session, str], object]


class Ingress:
    """How many webhook requests are being answered right now.

    Senders wait on those answers (and time out); applying can wait a moment.
    So while requests are in flight the worker steps aside briefly before each
    row instead of competing for the one interpreter lock. Bounded: it never
    waits more than `max_yield` per row, so a storm that never pauses slows
    applying down but cannot stop it.
    """

    def __init__(self, max_yield: float = 0.05, step: float = 0.002) -> None:
        self.in_flight = 0  # changed on the event loop only; read from the worker
        self.max_yield = max_yield
        self.step = step

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    def yield_to_requests(self) -> None:
        deadline = time.monotonic() + self.max_yield
        while self.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(self.step)


class InboxWorker:
    """Applies inbox rows on one dedicated thread, in claim order, until stopped.

    One thread keeps a group's batches in the order they were accepted (within
    this replica) and leaves the default pool to PagerDuty webhooks and Slack.
    """

    def __init__(
        self,
        inbox: Inbox,
        appliers: Mapping[str, Applier],
        poll_seconds: float = 1.0,
        ingress: Ingress | None = None,
        together: SessionApplier | None = None,
        together_limit: int = 16,
        together_seconds: float | None = None,
    ) -> None:
        self.inbox = inbox
        self.ingress = ingress or Ingress()
        self.appliers = dict(appliers)
        self.together = together
        self.together_limit = together_limit
        # A transaction stops taking rows after this long. On SQLite it holds the
        # one write lock, which a webhook arriving meanwhile needs to store its
        # body: 50 ms. PostgreSQL locks rows, and each commit waits for its WAL
        # flush: longer transactions, fewer commits.
        if together_seconds is None:
            together_seconds = 0.5 if inbox.postgres else 0.05
        self.together_seconds = together_seconds
        self._one_at_a_time = 0  # rows left to take singly after a failed batch
        self.poll_seconds = poll_seconds
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbox")
        self._database = OutageLog("inbox")
        self._wake: asyncio.Event | None = None
        self._stopping = False

    async def run(self) -> None:
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._wake.clear()
            try:
                applied = await loop.run_in_executor(self.thread, self.apply_some)
                self._database.ok()
            except sa.exc.SQLAlchemyError as exc:
                # The database is away: the rows wait there, durable, for its return.
                self._database.failed(exc)
                applied = 0
            if applied == 0 and not self._stopping:
                with contextlib.suppress(sa.exc.SQLAlchemyError):
                    await loop.run_in_executor(self.thread, self._publish_counts)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)

    def _publish_counts(self) -> None:
        """Only when idle: a count per row applied would cost more than the rows."""
        for state, count in self.inbox.counts().items():
            metrics.INBOX_ROWS.labels(state).set(count)

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def stop(self) -> None:
        """Finish the row in hand; the rest stays in the table for the next start."""
        self._stopping = True
        self.wake()
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.thread.shutdown(wait=True)
        )

    def apply_some(self, limit: int = 50) -> int:
        """Apply up to `limit` rows; how many were claimed (0 when the inbox is idle)."""
        done = 0
        while done < limit and not self._stopping:
            self.ingress.yield_to_requests()
            if self.together is not None and self._one_at_a_time == 0:
                taken = self._apply_together(limit - done)
                if taken == 0:
                    break  # nothing due
                if taken is not None:
                    done += taken
                    continue
            # Another source's row is next, or a batch failed: the leased path,
            # with its retries and backoff, one row at a time.
            self._one_at_a_time = max(0, self._one_at_a_time - 1)
            claimed = self.inbox.claim()
            if claimed is None:
                break
            self._apply(claimed)
            done += 1
        return done

    def _apply_together(self, limit: int) -> int | None:
        """Apply the next rows of the `together` source and delete them, all in one
        transaction: how many; 0 when nothing is due; None when the next row is
        another source's or the transaction failed.

        One commit for several Alertmanager batches instead of three per batch
        (claim, apply, delete). While webhooks are being answered it takes one
        row at a time: a long transaction would hold SQLite's single write
        lock, which those answers need to store their bodies.
        """
        together = self.together
        assert together is not None
        size = 1 if self.ingress.in_flight else min(limit, self.together_limit)
        rows: list[Claimed] = []
        try:
            with together.session() as session:
                heads = self.inbox.heads(session, size)
                if not heads:
                    return 0
                candidates = itertools.takewhile(lambda r: r.source == together.source, heads)
                started = time.monotonic()
                for row in candidates:
                    together.apply(session, row.body)
                    rows.append(row)
                    if time.monotonic() - started >= self.together_seconds:
                        break  # the rest next time: others wait for this transaction's lock
                if not rows:
                    return None
                self.inbox.delete(session, [r.id for r in rows])
        except Exception as exc:
            # Rolled back, nothing applied. The rows applied before the failure
            # and the one that failed go singly next, so a bad row is retried,
            # backed off and kept alone while the others go on.
            log.info(
                "inbox rows not applied together; applying them one at a time",
                rows=len(rows),
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
            self._one_at_a_time = len(rows) + 1
            return None
        now = utcnow()
        metrics.INBOX_APPLIED.labels(together.source).inc(len(rows))
        for row in rows:
            metrics.INBOX_LAG.labels(row.source).observe(
                max(0.0, (now - row.received_at).total_seconds())
            )
        return len(rows)

    def _apply(self, claimed: Claimed) -> None:
        applier = self.appliers.get(claimed.source)
        try:
            if applier is None:
                raise LookupError(f"no applier for source {claimed.source!r}")
            applier(claimed.body, claimed.attempts > 1)
        except Exception as exc:
            log.warning(
                "inbox batch not applied; will retry",
                batch=claimed.id,
                source=claimed.source,
                attempt=claimed.attempts,
                error=f"{type(exc).__name__}: {exc}"[:500],
            )
            self.inbox.fail(claimed, f"{type(exc).__name__}: {exc}")
            return
        self.inbox.finish(claimed)
        metrics.INBOX_APPLIED.labels(claimed.source).inc()
        lag = max(0.0, (utcnow() - claimed.received_at).total_seconds())
        metrics.INBOX_LAG.labels(claimed.source).observe(lag)
