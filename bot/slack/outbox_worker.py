"""The Slack delivery worker: sends the ``output = 'slack'`` outbox rows, paced, once.

`bot.slack.outbox` enqueues rows in the caller's transaction; `OutboxWorker`
(one per process; replicas may share a database) delivers them, asking
`bot.slack.outbox_store.OutboxStore` which rows are due and recording there
how each call went. Rows of other outputs are never loaded or claimed.

Guarantees and how they are kept:

* **Once, across replicas.** A worker *claims* a row with a compare-and-set
  ``UPDATE ... SET attempts = attempts + 1, next_attempt_at = now + lease
  WHERE id = ? AND output = 'slack' AND state = 'pending' AND attempts = <seen>
  AND next_attempt_at <= now`` and only the winner sends it. The payload is
  read *after* the claim, in the claim's transaction, so a coalesced payload
  committed before the claim is the one sent. A crashed worker's claim expires
  after ``lease_seconds`` and the row is retried.
* **Order.** Per incident, a pending root post goes first; the other rows go
  in id order and only once ``incidents.slack_root_ts`` exists. Across
  incidents of a paced channel, root posts go before replies and updates
  (PagerDuty's first), so a new incident shows up before details of old ones.
  A drill's rows (``priority`` 1) go after every real incident's due row
  in the channel: a pass that sent a real row stops before a drill's and
  looks again, as the real incident's next row may be due by then.
  Only the head row of an incident is ever eligible, so a reply never
  overtakes the root or an earlier reply, an edit never overtakes the reply it
  edits, and a row in backoff holds back its incident only. Messages without
  an incident are ordered per channel the same way.
* **Edits.** An edit row (``edit:<key>``) is a chat.update of the newest
  reply of its incident keyed ``<key>`` enqueued before it; by the time the
  edit is the head, that reply is sent or failed. If it failed, or no such
  reply exists, the edit fails at once (``last_error`` says which).
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
  on the look-up is handled like one on the post. chat.update retries (root
  updates, edits) are harmless and are not looked up.

Known window, now small: the look-up cannot run (no ``channels:history`` /
``groups:history`` scope, the channel not readable: a permanent error, logged as
``outbox_lookup_failed``) or gives up after ``MAX_PAGES`` pages of newer
messages (``outbox_lookup_gave_up``); the message is then posted again and may
appear twice. Slack's clock may run up to ``CLOCK_SKEW`` behind ours.
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
import structlog
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import slack_calls
from bot.slack.delivery_lookup import Found, find_delivery
from bot.slack.outbox_rows import OUTPUT, POST, UPDATE
from bot.slack.outbox_store import (
    Candidate,
    Claimed,
    OutboxStore,
    Paced,
    RootRenderer,
    Success,
    pace_key,
)
from bot.slack.slack_calls import Failure
from bot.timeline.pacing import TokenBucket, backoff_delay
from bot.timeline.worker_loop import PassLoop

__all__ = ["OutboxWorker"]

log = structlog.get_logger("bot.slack.outbox")


class OutboxWorker(PassLoop):
    """Delivers Slack outbox rows; run one per process (replicas may share a database)."""

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
        render_root: RootRenderer | None = None,
    ) -> None:
        if rate_per_channel <= 0 or burst < 1:
            raise ValueError("rate_per_channel must be > 0 and burst >= 1")
        if call_timeout >= lease_seconds:
            # Otherwise a slow call could outlive its claim and be sent twice.
            raise ValueError("call_timeout must be shorter than lease_seconds")
        super().__init__(
            "outbox",
            [OUTPUT],
            poll_interval=poll_interval,
            max_pause=backoff_cap,
            # Finish the call in flight: it may have reached Slack.
            stop_grace=call_timeout + 5,
        )
        self.engine = engine
        # Our own copy without retry handlers: we handle 429s and errors ourselves.
        self.client = copy.copy(client)
        self.client.retry_handlers = []
        self.rate_per_channel = rate_per_channel
        self.burst = burst
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.backoff_cap = backoff_cap
        self.backoff_base = backoff_base
        self.call_timeout = call_timeout
        self._store = OutboxStore(
            engine,
            max_attempts=max_attempts,
            lease_seconds=lease_seconds,
            backoff=self._backoff,
            render_root=render_root,
            pace=(rate_per_channel, burst),
        )

        self._paces: dict[str, TokenBucket] = {}
        self._pass_lock = asyncio.Lock()
        self._unrecorded: dict[int, Success] = {}
        self._random = random.Random()  # noqa: S311 - jitter, not cryptography

    def _started_fields(self) -> dict[str, Any]:
        return {"rate_per_channel": self.rate_per_channel, "burst": self.burst}

    # -- one pass ------------------------------------------------------------

    async def deliver_due(self) -> int:
        """Send every row that is due and allowed by pacing; return how many were sent."""
        async with self._pass_lock:
            self._next_due = None
            if self._unrecorded:
                await asyncio.to_thread(self._record_unrecorded)
            candidates = await asyncio.to_thread(self._load_candidates)
            return await self._drain_grouped(
                candidates, lambda cand: cand.channel, self._drain_channel
            )

    def _load_candidates(self) -> list[Candidate]:
        due = self._store.due(skip=self._unrecorded)
        if due.next_in is not None:
            self._note_due(time.monotonic() + due.next_in)
        return due.candidates

    def _pace(self, channel: str) -> TokenBucket:
        pace = self._paces.get(channel)
        if pace is None:
            pace = self._paces[channel] = TokenBucket(
                self.rate_per_channel, self.burst, time.monotonic()
            )
        return pace

    async def _drain_channel(self, channel: str, candidates: list[Candidate]) -> int:
        sent = 0
        pace = self._pace(channel)
        sent_priority: int | None = None
        for cand in candidates:
            if self._stopping:
                break
            if sent_priority is not None and cand.priority > sent_priority:
                # The incident just served may have its next row due, unseen by
                # this pass (only heads are candidates): look again before a
                # lower-priority (drill) row takes the channel's next slot.
                break
            now = time.monotonic()
            ready_at = pace.ready_at(now)
            if ready_at > now:
                self._note_due(ready_at)
                break
            claimed = await asyncio.to_thread(self._store.claim, cand)
            if isinstance(claimed, Paced):
                # Another replica took this channel's slot: ours waits for the next.
                pace.block(time.monotonic(), claimed.wait)
                self._note_due(time.monotonic() + claimed.wait)
                break
            if claimed is None:
                continue
            # Spend the token now, not before the claim: Slack counts arrivals,
            # and a slow claim must not bunch two calls closer than the pace.
            pace.spend(time.monotonic())
            outcome = await self._send(claimed)
            if isinstance(outcome, Success):
                await self._record_success(outcome)
                sent += 1
                sent_priority = cand.priority
                continue
            await asyncio.to_thread(self._store.record_failure, claimed, outcome)
            if outcome.kind == "ratelimited":
                pace.block(time.monotonic(), outcome.retry_after)
                key = pace_key(claimed.method, str(claimed.kwargs["channel"]))
                await asyncio.to_thread(self._store.hold_pace, key, outcome.retry_after)
                self._note_due(time.monotonic() + outcome.retry_after)
                break
        return sent

    async def _record_success(self, success: Success) -> None:
        try:
            await asyncio.to_thread(self._store.record_success, success)
        except Exception:
            # Slack has it; keep retrying the write so the lease never re-sends it.
            self._unrecorded[success.claimed.id] = success
            log.exception("outbox_record_failed", outbox_id=success.claimed.id)

    def _record_unrecorded(self) -> None:
        for row_id, success in list(self._unrecorded.items()):
            self._store.record_success(success)
            del self._unrecorded[row_id]

    def _backoff(self, attempts: int) -> float:
        return backoff_delay(attempts, self.backoff_base, self.backoff_cap, self._random)

    # -- Slack ---------------------------------------------------------------

    async def _send(self, claimed: Claimed) -> Success | Failure:
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

    def _answered(self, claimed: Claimed, answer: Mapping[str, Any] | Failure) -> Success | Failure:
        if isinstance(answer, Failure):
            return answer
        ts, channel = answer.get("ts"), answer.get("channel")
        log.debug("outbox_sent", outbox_id=claimed.id, method=claimed.method, ts=ts)
        return Success(
            claimed,
            ts=str(ts) if ts is not None else None,
            channel=str(channel) if channel else None,
        )

    async def _look_up(self, claimed: Claimed) -> Success | Failure | None:
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
            return Success(claimed, ts=result.ts, channel=kwargs["channel"], adopted=True)
        if isinstance(result, Failure):
            if result.kind != "permanent":
                return result
            # missing_scope, not_in_channel...: cannot look, so post (maybe twice).
            log.warning("outbox_lookup_failed", error=result.error, **fields)
        elif not result.complete:
            log.warning("outbox_lookup_gave_up", pages=result.pages, **fields)
        return None
