"""The durable, paced Slack outbox: every message the bot sends goes through it.

Enqueueing is a row in the ``outbox`` table, written in the caller's own
transaction: a message exists exactly when the state change that caused it
commits, and a crash can lose neither. `OutboxWorker` delivers the rows.

Row kinds (told apart by ``method`` and ``coalesce_key``)::

    root     chat.postMessage  "incident:<id>:root"    stores the incident's root ts when sent
    reply    chat.postMessage  NULL (incident set)     thread_ts = the root ts, at delivery
    update   chat.update       "incident:<id>:update"  ts = the root ts, at delivery
    message  chat.postMessage  NULL (no incident)      as given (thread_ts optional)

Guarantees and how they are kept:

* **Once, across replicas.** A worker *claims* a row with a compare-and-set
  ``UPDATE ... SET attempts = attempts + 1, next_attempt_at = now + lease
  WHERE id = ? AND state = 'pending' AND attempts = <seen> AND next_attempt_at <= now``
  and only the winner sends it. The payload is read *after* the claim, in the
  claim's transaction, so a coalesced payload committed before the claim is
  the one sent. A crashed worker's claim expires after ``lease_seconds`` and
  the row is retried.
* **Coalescing.** ``attempts = 0`` means "never in flight" (a claim makes it
  >= 1 and only a 429 puts it back, once the call is over), so coalescing is
  ``UPDATE ... SET payload = ? WHERE id = ? AND state = 'pending' AND attempts = 0``
  on the newest pending root/update row of the incident; if that fails (the
  row is being sent), a new update row is inserted.
* **Order.** Per incident, a pending root post goes first; the other rows go
  in id order and only once ``incidents.slack_root_ts`` exists. Across
  incidents of a paced channel, root posts go before replies and updates
  (PagerDuty's first), so a new incident shows up before details of old ones. Only the head
  row of an incident is ever eligible, so a reply never overtakes the root or
  an earlier reply, and a row in backoff holds back its incident only.
  Messages without an incident are ordered per channel the same way.
* **Pacing.** A token bucket per channel (default 1/s, burst 2), per process.
  HTTP 429 blocks the channel for ``Retry-After`` and returns the row to the
  queue without counting an attempt.
* **Failures.** HTTP 5xx, network errors, timeouts and Slack's transient
  error codes back off exponentially (with jitter, capped); other
  ``ok: false`` errors (``channel_not_found``, ``invalid_blocks``,
  ``msg_too_long``, ...) fail the row at once; after ``max_attempts`` it fails too.

* **Exactly once into Slack.** Slack has no idempotency key for
  chat.postMessage, so every post carries message metadata naming its row
  (``event_type: nexus_delivery``, ``delivery_id``, ``enqueued_at``; see
  `bot.slack.delivery_lookup`), and the claim records ``first_attempt_at``. A
  post claimed again (``attempts > 1``: the earlier attempt timed out, lost its
  connection, got a 5xx, or its worker died and the lease ran out) is first
  looked for with conversations.history (conversations.replies for a thread
  reply) from ``first_attempt_at`` on, metadata included; if found, its ts is
  recorded as if the post had just succeeded (a root's becomes
  ``incidents.slack_root_ts``) and nothing is posted. A 429 or network error
  on the look-up is handled like one on the post. chat.update retries are
  harmless and are not looked up.

Known window, now small: the look-up cannot run (no ``channels:history`` /
``groups:history`` scope, the channel not readable: a permanent error, logged as
``outbox_lookup_failed``) or gives up after ``MAX_PAGES`` pages of newer
messages (``outbox_lookup_gave_up``); the message is then posted again and may
appear twice. Slack's clock may run up to ``CLOCK_SKEW`` behind ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import random
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
import structlog
from prometheus_client import Counter, Gauge, Histogram
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.orm import Session

from bot.metrics import REGISTRY
from bot.slack import slack_calls
from bot.slack.delivery_lookup import Delivery, Found, find_delivery
from bot.slack.slack_calls import Failure
from bot.store.db import READ_ONLY_OPTIONS
from bot.store.models import Incident, OutboxMessage, utcnow
from bot.store.outage import OutageLog
from bot.timeline.pacing import TokenBucket, backoff_delay

__all__ = [
    "OutboxWorker",
    "enqueue_message",
    "enqueue_root_post",
    "enqueue_root_update",
    "enqueue_thread_reply",
]

log = structlog.get_logger("bot.slack.outbox")

POST = "chat.postMessage"
UPDATE = "chat.update"

OUTBOX_PENDING = Gauge(
    "nexus_outbox_pending",
    "Outbox rows waiting to be delivered (as of this replica's last pass).",
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

_OUTBOX = cast(sa.Table, OutboxMessage.__table__)
_INCIDENTS = cast(sa.Table, Incident.__table__)
_WAKE_KEY = "nexus_outbox_wake_pending"
ROOT_EDIT_INTERVAL = timedelta(seconds=3)


def _root_key(incident_id: int) -> str:
    return f"incident:{incident_id}:root"


def _update_key(incident_id: int) -> str:
    return f"incident:{incident_id}:update"


def _kind(method: str, incident_id: int | None, coalesce_key: str | None) -> str:
    if incident_id is None:
        return "message"
    if method == UPDATE:
        return "update"
    if coalesce_key is not None and coalesce_key.endswith(":root"):
        return "root"
    return "reply"


# -- enqueueing --------------------------------------------------------------


def _content(text: str, blocks: list[dict[str, Any]] | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"text": text}
    if blocks is not None:
        payload["blocks"] = blocks
    return payload


def _insert(
    session: Session,
    *,
    channel: str,
    method: str,
    payload: dict[str, Any],
    incident_id: int | None = None,
    coalesce_key: str | None = None,
    thread_ts: str | None = None,
    not_before: datetime | None = None,
) -> None:
    now = utcnow()
    session.execute(
        sa.insert(OutboxMessage).values(
            channel=channel,
            method=method,
            incident_id=incident_id,
            thread_ts=thread_ts,
            coalesce_key=coalesce_key,
            payload=payload,
            state="pending",
            attempts=0,
            next_attempt_at=max(now, not_before) if not_before is not None else now,
            created_at=now,
        )
    )
    _wake_after_commit(session)


def _incident_channel(session: Session, incident_id: int, channel: str | None) -> str:
    """The channel to record on a reply/update row (delivery uses the root's)."""
    if channel:
        return channel
    known = session.execute(
        sa.select(_INCIDENTS.c.slack_channel).where(_INCIDENTS.c.id == incident_id)
    ).scalar_one_or_none()
    if known:
        return str(known)
    pending_root = session.execute(
        sa.select(_OUTBOX.c.channel)
        .where(_OUTBOX.c.coalesce_key == _root_key(incident_id))
        .order_by(_OUTBOX.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return str(pending_root or "")


def enqueue_root_post(
    session: Session, incident_id: int, channel: str, text: str, blocks: list[dict[str, Any]]
) -> None:
    """Post the incident's root message; its ts becomes ``incidents.slack_root_ts``.

    The ts (and the channel id Slack answers with) is stored in the same
    transaction that marks the row sent.
    """
    _insert(
        session,
        channel=channel,
        method=POST,
        payload=_content(text, blocks),
        incident_id=incident_id,
        coalesce_key=_root_key(incident_id),
    )


def enqueue_thread_reply(
    session: Session,
    incident_id: int,
    channel: str | None,
    text: str,
    blocks: list[dict[str, Any]] | None = None,
) -> None:
    """Reply in the incident's thread; waits (without error) until the root exists.

    ``thread_ts`` and the channel are taken from the incident at delivery, so
    ``channel`` may be None when the root is not posted yet.
    """
    _insert(
        session,
        channel=_incident_channel(session, incident_id, channel),
        method=POST,
        payload=_content(text, blocks),
        incident_id=incident_id,
    )


def enqueue_root_update(
    session: Session,
    incident_id: int,
    channel: str | None,
    text: str,
    blocks: list[dict[str, Any]],
) -> None:
    """Make the incident's root message show ``text``/``blocks``; coalesced.

    The newest pending root post or root update of the incident takes the new
    content if no worker has claimed it yet; otherwise a new chat.update row
    is added (ts resolved at delivery). The newest content is therefore always
    in the last root-content row delivered.
    """
    content = _content(text, blocks)
    newest = session.execute(
        sa.select(_OUTBOX.c.id, _OUTBOX.c.attempts, _OUTBOX.c.payload)
        .where(
            _OUTBOX.c.incident_id == incident_id,
            _OUTBOX.c.state == "pending",
            _OUTBOX.c.coalesce_key.in_([_root_key(incident_id), _update_key(incident_id)]),
        )
        .order_by(_OUTBOX.c.id.desc())
        .limit(1)
    ).first()
    if newest is not None and newest.attempts == 0:
        payload = {**(newest.payload or {}), **content}
        if blocks is None:
            payload.pop("blocks", None)
        result = session.execute(
            sa.update(_OUTBOX)
            .where(
                _OUTBOX.c.id == newest.id,
                _OUTBOX.c.state == "pending",
                _OUTBOX.c.attempts == 0,
            )
            .values(payload=payload)
        )
        if cast(sa.CursorResult[Any], result).rowcount == 1:
            _wake_after_commit(session)
            return
    # A root is edited at most once per ROOT_EDIT_INTERVAL: in a storm, the edits
    # that arrive meanwhile coalesce into this row instead of becoming calls.
    last_edit = session.execute(
        sa.select(sa.func.max(_OUTBOX.c.sent_at)).where(
            _OUTBOX.c.incident_id == incident_id,
            _OUTBOX.c.state == "sent",
            _OUTBOX.c.coalesce_key.in_([_root_key(incident_id), _update_key(incident_id)]),
        )
    ).scalar_one_or_none()
    not_before = last_edit + ROOT_EDIT_INTERVAL if last_edit is not None else None
    _insert(
        session,
        channel=_incident_channel(session, incident_id, channel),
        method=UPDATE,
        payload=content,
        incident_id=incident_id,
        coalesce_key=_update_key(incident_id),
        not_before=not_before,
    )


def enqueue_message(
    session: Session,
    channel: str,
    text: str,
    blocks: list[dict[str, Any]] | None = None,
    thread_ts: str | None = None,
) -> None:
    """A message not tied to an incident thread (ordered per channel)."""
    _insert(
        session, channel=channel, method=POST, payload=_content(text, blocks), thread_ts=thread_ts
    )


# Workers running in this process; woken after an enqueueing transaction commits.
_LOCAL_WORKERS: weakref.WeakSet[OutboxWorker] = weakref.WeakSet()


def _wake_local_workers() -> None:
    for worker in list(_LOCAL_WORKERS):
        worker.wake()


def _wake_after_commit(session: Session) -> None:
    if session.info.get(_WAKE_KEY):
        return
    session.info[_WAKE_KEY] = True

    def on_commit(s: Session) -> None:
        s.info.pop(_WAKE_KEY, None)
        _wake_local_workers()

    sa.event.listen(session, "after_commit", on_commit, once=True)


# -- delivery ----------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    id: int
    incident_id: int | None
    kind: str
    method: str
    channel: str  # pacing key
    attempts: int
    rank: int = 2  # lower goes first within a channel; see _rank


def _rank(kind: str, source: str | None) -> int:
    """What a channel sends first when it is paced: a new incident must be seen
    before more details of old ones, and an incident that pages (PagerDuty) first."""
    if kind == "root":
        return 0 if source == "pagerduty" else 1
    return 2


@dataclass(frozen=True)
class _Claimed:
    id: int
    incident_id: int | None
    kind: str
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
class _Success:
    claimed: _Claimed
    ts: str | None
    channel: str | None
    adopted: bool = False  # found in Slack after a lost answer, not posted now


class _NotReady(Exception):
    """Raised inside a claim's transaction to roll it back."""


class OutboxWorker:
    """Delivers outbox rows to Slack; run one per process (replicas may share a database)."""

    def __init__(
        self,
        engine: sa.Engine,
        client: AsyncWebClient,
        *,
        rate_per_channel: float = 1.0,
        burst: int = 2,
        max_attempts: int = 25,
        poll_interval: float = 0.25,
        lease_seconds: float = 60,
        backoff_cap: float = 60,
        backoff_base: float = 1.0,
        call_timeout: float = 30.0,
    ) -> None:
        if rate_per_channel <= 0 or burst < 1:
            raise ValueError("rate_per_channel must be > 0 and burst >= 1")
        if call_timeout >= lease_seconds:
            # Otherwise a slow call could outlive its claim and be sent twice.
            raise ValueError("call_timeout must be shorter than lease_seconds")
        self.engine = engine
        self._read_engine = engine.execution_options(**READ_ONLY_OPTIONS)
        # Our own copy without retry handlers: we handle 429s and errors ourselves.
        self.client = copy.copy(client)
        self.client.retry_handlers = []
        self.rate_per_channel = rate_per_channel
        self.burst = burst
        self.max_attempts = max_attempts
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.backoff_cap = backoff_cap
        self.backoff_base = backoff_base
        self.call_timeout = call_timeout

        self._paces: dict[str, TokenBucket] = {}
        self._pass_lock = asyncio.Lock()
        self._unrecorded: dict[int, _Success] = {}
        self._next_due: float | None = None  # monotonic time something becomes sendable
        self._random = random.Random()  # noqa: S311 - jitter, not cryptography
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_event: asyncio.Event | None = None
        self._stopping = False
        self._database = OutageLog("outbox")
        self._run_task: asyncio.Task[None] | None = None
        self._stopped: asyncio.Event | None = None

    # -- lifecycle -----------------------------------------------------------

    async def run(self) -> None:
        """Deliver until `stop`; errors are logged and retried, never raised.

        A `stop` that came before ``run`` got going makes it return at once.
        """
        self._loop = asyncio.get_running_loop()
        self._wake_event = asyncio.Event()
        self._stopped = asyncio.Event()
        self._run_task = asyncio.current_task()
        _LOCAL_WORKERS.add(self)
        failures = 0
        log.info("outbox_worker_started", rate_per_channel=self.rate_per_channel, burst=self.burst)
        try:
            while not self._stopping:
                self._wake_event.clear()
                try:
                    sent = await self.deliver_due()
                    failures = 0
                    self._database.ok()
                except Exception as exc:
                    failures += 1
                    pause = min(
                        self.backoff_cap, self.poll_interval * float(2 ** min(failures, 16))
                    )
                    if isinstance(exc, sa.exc.SQLAlchemyError):
                        self._database.failed(exc)  # once per outage, not once per pass
                    else:
                        log.exception("outbox_pass_failed", failures=failures, retry_in=pause)
                    await self._sleep(pause)
                    continue
                if sent:
                    await asyncio.sleep(0)
                    continue
                await self._sleep(self._wait_time())
        finally:
            _LOCAL_WORKERS.discard(self)
            self._stopping = False  # may run again
            self._run_task = None
            self._stopped.set()
            log.info("outbox_worker_stopped")

    def wake(self) -> None:
        """Look for work now. Thread-safe; enqueuers call it after committing."""
        loop, event = self._loop, self._wake_event
        if loop is None or event is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closing
            loop.call_soon_threadsafe(event.set)

    async def stop(self, grace: float | None = None) -> None:
        """Finish the call in flight (up to ``grace``, default call_timeout + 5 s), then stop."""
        self._stopping = True
        self.wake()
        task, stopped = self._run_task, self._stopped
        if task is None or stopped is None or task is asyncio.current_task():
            return
        try:
            await asyncio.wait_for(stopped.wait(), grace or self.call_timeout + 5)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sleep(self, seconds: float) -> None:
        event = self._wake_event
        if event is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), max(0.0, seconds))

    def _wait_time(self) -> float:
        wait = self.poll_interval
        if self._next_due is not None:
            wait = min(wait, max(0.0, self._next_due - time.monotonic()))
        return wait

    # -- one pass ------------------------------------------------------------

    async def deliver_due(self) -> int:
        """Send every row that is due and allowed by pacing; return how many were sent."""
        async with self._pass_lock:
            self._next_due = None
            if self._unrecorded:
                await asyncio.to_thread(self._record_unrecorded)
            candidates = await asyncio.to_thread(self._load_candidates)
            by_channel: dict[str, list[_Candidate]] = {}
            for cand in candidates:
                by_channel.setdefault(cand.channel, []).append(cand)
            results = await asyncio.gather(
                *(self._drain_channel(ch, cands) for ch, cands in by_channel.items()),
                return_exceptions=True,
            )
            sent = 0
            for result in results:
                if isinstance(result, BaseException):
                    raise result
                sent += result
            return sent

    def _note_due(self, at: float) -> None:
        if self._next_due is None or at < self._next_due:
            self._next_due = at

    def _pace(self, channel: str) -> TokenBucket:
        pace = self._paces.get(channel)
        if pace is None:
            pace = self._paces[channel] = TokenBucket(
                self.rate_per_channel, self.burst, time.monotonic()
            )
        return pace

    async def _drain_channel(self, channel: str, candidates: list[_Candidate]) -> int:
        sent = 0
        pace = self._pace(channel)
        for cand in candidates:
            if self._stopping:
                break
            now = time.monotonic()
            ready_at = pace.ready_at(now)
            if ready_at > now:
                self._note_due(ready_at)
                break
            claimed = await asyncio.to_thread(self._claim, cand)
            if claimed is None:
                continue
            # Spend the token now, not before the claim: Slack counts arrivals,
            # and a slow claim must not bunch two calls closer than the pace.
            pace.spend(time.monotonic())
            outcome = await self._send(claimed)
            if isinstance(outcome, _Success):
                await self._record_success(outcome)
                sent += 1
                continue
            await asyncio.to_thread(self._record_failure, claimed, outcome)
            if outcome.kind == "ratelimited":
                pace.block(time.monotonic(), outcome.retry_after)
                self._note_due(time.monotonic() + outcome.retry_after)
                break
        return sent

    # -- database ------------------------------------------------------------

    def _load_candidates(self) -> list[_Candidate]:
        """The head row of each incident (and of each channel's loose messages) that is due."""
        o, i = _OUTBOX, _INCIDENTS
        query = (
            sa.select(
                o.c.id,
                o.c.incident_id,
                o.c.method,
                o.c.coalesce_key,
                o.c.channel,
                o.c.attempts,
                o.c.next_attempt_at,
                i.c.slack_channel,
                i.c.slack_root_ts,
                i.c.source,
            )
            .select_from(o.outerjoin(i, i.c.id == o.c.incident_id))
            .where(o.c.state == "pending")
            .order_by(o.c.id)
        )
        with self._read_engine.connect() as conn:
            rows = conn.execute(query).all()
        OUTBOX_PENDING.set(len(rows))

        heads: dict[tuple[str, Any], Any] = {}
        roots: dict[int, Any] = {}
        for row in rows:
            kind = _kind(row.method, row.incident_id, row.coalesce_key)
            if kind == "message":
                heads.setdefault(("channel", row.channel), row)
                continue
            if kind == "root":
                roots.setdefault(row.incident_id, row)
            heads.setdefault(("incident", row.incident_id), row)

        now, mono = utcnow(), time.monotonic()
        candidates = []
        for (scope, key), row in heads.items():
            if scope == "incident":
                # A pending root post goes first; the rest need the root's ts.
                row = roots.get(key, row)
                kind = _kind(row.method, row.incident_id, row.coalesce_key)
                if kind != "root" and not row.slack_root_ts:
                    continue
            else:
                kind = "message"
            if row.id in self._unrecorded:
                continue
            if row.next_attempt_at > now:
                self._note_due(mono + (row.next_attempt_at - now).total_seconds())
                continue
            channel = row.channel
            if kind in ("reply", "update") and row.slack_channel:
                channel = row.slack_channel
            candidates.append(
                _Candidate(
                    row.id,
                    row.incident_id,
                    kind,
                    row.method,
                    channel,
                    row.attempts,
                    _rank(kind, row.source),
                )
            )
        candidates.sort(key=lambda c: (c.rank, c.id))
        return candidates

    def _claim(self, cand: _Candidate) -> _Claimed | None:
        """Compare-and-set claim; the payload is read after winning it."""
        try:
            return self._claim_in_transaction(cand)
        except _NotReady:
            return None

    def _claim_in_transaction(self, cand: _Candidate) -> _Claimed | None:
        o, i = _OUTBOX, _INCIDENTS
        now, claimed_at = utcnow(), time.monotonic()
        with self.engine.begin() as conn:
            if cand.attempts >= self.max_attempts:
                # Its claims kept expiring (a worker dying on it each time).
                conn.execute(
                    sa.update(o)
                    .where(o.c.id == cand.id, o.c.state == "pending", o.c.attempts == cand.attempts)
                    .values(state="failed", last_error="max_attempts (claims expired)")
                )
                OUTBOX_FAILED.labels("max_attempts").inc()
                log.error("outbox_failed", outbox_id=cand.id, reason="max_attempts")
                return None
            claimed = conn.execute(
                sa.update(o)
                .where(
                    o.c.id == cand.id,
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
                    o.c.created_at,
                    o.c.first_attempt_at,
                    i.c.slack_channel,
                    i.c.slack_root_ts,
                )
                .select_from(o.outerjoin(i, i.c.id == o.c.incident_id))
                .where(o.c.id == cand.id)
            ).one()
            kwargs: dict[str, Any] = dict(row.payload or {})
            kwargs["channel"] = row.channel
            if cand.kind in ("reply", "update"):
                if not row.slack_root_ts:
                    raise _NotReady  # the root vanished since the snapshot: undo the claim
                kwargs["channel"] = row.slack_channel or row.channel
                kwargs["thread_ts" if cand.kind == "reply" else "ts"] = row.slack_root_ts
            elif cand.kind == "message" and row.thread_ts:
                kwargs["thread_ts"] = row.thread_ts
        return _Claimed(
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

    async def _record_success(self, success: _Success) -> None:
        try:
            await asyncio.to_thread(self._write_success, success)
        except Exception:
            # Slack has it; keep retrying the write so the lease never re-sends it.
            self._unrecorded[success.claimed.id] = success
            log.exception("outbox_record_failed", outbox_id=success.claimed.id)

    def _record_unrecorded(self) -> None:
        for row_id, success in list(self._unrecorded.items()):
            self._write_success(success)
            del self._unrecorded[row_id]

    def _write_success(self, success: _Success) -> None:
        claimed, now = success.claimed, utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(_OUTBOX)
                .where(_OUTBOX.c.id == claimed.id, _OUTBOX.c.state == "pending")
                .values(state="sent", sent_at=now, result_ts=success.ts, last_error=None)
            )
            if claimed.kind == "root" and success.ts:
                conn.execute(
                    sa.update(_INCIDENTS)
                    .where(_INCIDENTS.c.id == claimed.incident_id)
                    .values(
                        slack_channel=success.channel or claimed.kwargs["channel"],
                        slack_root_ts=success.ts,
                        updated_at=now,
                    )
                )
        OUTBOX_DELIVERY_SECONDS.observe(max(0.0, (now - claimed.created_at).total_seconds()))

    def _record_failure(self, claimed: _Claimed, failure: Failure) -> None:
        now = utcnow()
        cas = (
            _OUTBOX.c.id == claimed.id,
            _OUTBOX.c.state == "pending",
            _OUTBOX.c.attempts == claimed.attempts,
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
            conn.execute(sa.update(_OUTBOX).where(*cas).values(**values))

    def _backoff(self, attempts: int) -> float:
        return backoff_delay(attempts, self.backoff_base, self.backoff_cap, self._random)

    # -- Slack ---------------------------------------------------------------

    async def _send(self, claimed: _Claimed) -> _Success | Failure:
        kwargs = claimed.kwargs
        if claimed.method == UPDATE:
            answer = await slack_calls.call(
                UPDATE, self.client.chat_update(**kwargs), self.call_timeout, outbox_id=claimed.id
            )
            return self._answered(claimed, answer)
        if claimed.attempts > 1:
            # An earlier attempt may have reached Slack: adopt its message if so.
            found = await self._look_up(claimed)
            if found is not None:
                return found
        answer = await slack_calls.call(
            POST,
            self.client.chat_postMessage(**kwargs, metadata=claimed.delivery.metadata()),
            self.call_timeout,
            outbox_id=claimed.id,
        )
        return self._answered(claimed, answer)

    def _answered(
        self, claimed: _Claimed, answer: Mapping[str, Any] | Failure
    ) -> _Success | Failure:
        if isinstance(answer, Failure):
            return answer
        ts, channel = answer.get("ts"), answer.get("channel")
        log.debug("outbox_sent", outbox_id=claimed.id, method=claimed.method, ts=ts)
        return _Success(
            claimed,
            ts=str(ts) if ts is not None else None,
            channel=str(channel) if channel else None,
        )

    async def _look_up(self, claimed: _Claimed) -> _Success | Failure | None:
        """The earlier attempt's message if Slack has it; a Failure to retry the
        look-up later (429, network); None to post."""
        kwargs = claimed.kwargs
        fields = {"outbox_id": claimed.id, "incident_id": claimed.incident_id}
        result = await find_delivery(
            self.client,
            claimed.delivery,
            channel=kwargs["channel"],
            thread_ts=kwargs.get("thread_ts"),
            # Rows claimed before first_attempt_at existed: enqueueing came first.
            since=claimed.first_attempt_at or claimed.created_at,
            call_timeout=self.call_timeout,
            # The post that may follow must still end within the lease.
            deadline=claimed.claimed_at + self.lease_seconds - self.call_timeout,
        )
        if isinstance(result, Found):
            log.info("outbox_adopted", ts=result.ts, attempts=claimed.attempts, **fields)
            return _Success(claimed, ts=result.ts, channel=kwargs["channel"], adopted=True)
        if isinstance(result, Failure):
            if result.kind != "permanent":
                return result
            # missing_scope, not_in_channel...: cannot look, so post (maybe twice).
            log.warning("outbox_lookup_failed", error=result.error, **fields)
        elif not result.complete:
            log.warning("outbox_lookup_gave_up", pages=result.pages, **fields)
        return None


def pending_count(engine: sa.Engine, states: Iterable[str] = ("pending",)) -> int:
    """Rows in the given states (for probes and tests)."""
    with engine.execution_options(**READ_ONLY_OPTIONS).connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(_OUTBOX)
                .where(_OUTBOX.c.state.in_(list(states)))
            ).scalar_one()
        )
