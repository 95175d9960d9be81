"""The durable delivery worker of every output but Slack (email, PagerDuty, ...).

Rows come from `bot.timeline.queue.enqueue`; each names its ``output`` and the
worker hands it to that output's `Sender`. Slack's rows (``output = 'slack'``)
are `bot.slack.outbox_worker`'s: its thread ordering and look-ups are its own. The
guarantees are that worker's, for any output:

* **Once, across replicas.** A row is *claimed* with a compare-and-set
  ``UPDATE ... SET attempts = attempts + 1, next_attempt_at = now + lease
  WHERE id = ? AND state = 'pending' AND attempts = <seen> AND next_attempt_at <= now``;
  only the winner sends it, with the payload read after the claim. A claim
  whose worker died (or whose sender hung past ``lease_seconds``) expires and
  the row is tried again; a sender must therefore finish well within the lease.
* **Order.** Only the oldest pending row of each (output, incident) is
  eligible (rows without an incident: of each (output, channel)), so a row in
  backoff holds back its own incident only. Among the heads of one pacing
  key, ``priority`` 0 goes before 1 (a recovery drill's rows wait for real
  incidents'), then the oldest first.
* **Pacing.** A token bucket per (output, channel) from the sender's
  ``rate``/``burst``. ``Retry(after=s)`` blocks that key for s seconds and gives
  the attempt back (HTTP 429); ``Retry()`` backs off exponentially with jitter;
  ``Failed`` is final; a row still retrying after ``max_attempts`` fails. A
  sender that raises is a bug: logged, and retried like ``Retry()``.
* **Settling.** The outcome is written with a compare-and-set too, and the
  report of a `Sent`/`Failed` goes to ``on_report`` in that same transaction, so
  it is recorded exactly when the state changes: once. A delivered row whose
  write fails (the database is away, the hook raised) is written again on later
  passes and never sent again by this worker.

The table reads and writes are in `bot.timeline.delivery_rows`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from prometheus_client import Counter, Gauge, Histogram

from bot.metrics import REGISTRY
from bot.store.models import utcnow
from bot.timeline.delivery_rows import (
    Candidate,
    Claimed,
    ReportHookFailed,
    Settlement,
    claim,
    fail_unclaimed,
    pending_deliveries,
    scan_heads,
    write_settlement,
)
from bot.timeline.pacing import TokenBucket, backoff_delay
from bot.timeline.queue import (
    Failed,
    ReportHook,
    Result,
    Retry,
    Sender,
    Sent,
)
from bot.timeline.worker_loop import PassLoop

__all__ = ["DeliveryWorker", "pending_deliveries"]

log = structlog.get_logger("bot.timeline.delivery")

DELIVERY_SENT = Counter(
    "nexus_delivery_sent_total", "Deliveries made, by output.", ["output"], registry=REGISTRY
)
DELIVERY_FAILED = Counter(
    "nexus_delivery_failed_total",
    "Deliveries given up on, by output and reason (permanent or max_attempts).",
    ["output", "reason"],
    registry=REGISTRY,
)
DELIVERY_PENDING = Gauge(
    "nexus_delivery_pending",
    "Deliveries waiting, by output (as of this replica's last pass).",
    ["output"],
    registry=REGISTRY,
)
DELIVERY_SECONDS = Histogram(
    "nexus_delivery_seconds",
    "Time from enqueue to delivery, by output.",
    ["output"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
    registry=REGISTRY,
)

SLACK_OUTPUT = "slack"
# A send in flight when stop() is called gets this long to finish by default.
DEFAULT_STOP_GRACE = 10.0
# Failed passes are retried ever more slowly, but a database that is back is
# noticed within this long (backoff_cap, 300 s by default, is for rows).
MAX_PASS_PAUSE = 30.0

PaceKey = tuple[str, str]  # (output, channel)


class DeliveryWorker(PassLoop):
    """Delivers the outbox rows of the given outputs; run one per process."""

    def __init__(
        self,
        engine: sa.Engine,
        senders: Mapping[str, Sender],
        *,
        on_report: ReportHook | None = None,
        max_attempts: int = 10,
        poll_interval: float = 0.25,
        lease_seconds: float = 60,
        backoff_base: float = 1.0,
        backoff_cap: float = 300,
    ) -> None:
        if SLACK_OUTPUT in senders:
            raise ValueError("Slack rows are delivered by bot.slack.outbox_worker.OutboxWorker")
        for output, sender in senders.items():
            if sender.rate <= 0 or sender.burst < 1:
                raise ValueError(f"sender {output!r}: rate must be > 0 and burst >= 1")
        if max_attempts < 1 or lease_seconds <= 0:
            raise ValueError("max_attempts must be >= 1 and lease_seconds > 0")
        super().__init__(
            "delivery",
            senders,
            poll_interval=poll_interval,
            max_pause=MAX_PASS_PAUSE,
            stop_grace=DEFAULT_STOP_GRACE,
        )
        self.engine = engine
        self.senders = dict(senders)
        self.on_report = on_report
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap

        self._buckets: dict[PaceKey, TokenBucket] = {}
        self._pass_lock = asyncio.Lock()
        self._unrecorded: dict[int, Settlement] = {}
        self._random = random.Random()  # noqa: S311 - jitter, not cryptography

    def _started_fields(self) -> dict[str, Any]:
        return {"outputs": sorted(self.senders)}

    # -- one pass ------------------------------------------------------------

    async def deliver_due(self) -> int:
        """Send every row that is due and allowed by pacing; return how many were sent."""
        async with self._pass_lock:
            self._next_due = None
            if self._unrecorded:
                await asyncio.to_thread(self._record_unrecorded)
            scan = await asyncio.to_thread(
                scan_heads, self.engine, list(self.senders), set(self._unrecorded)
            )
            for output in self.senders:
                DELIVERY_PENDING.labels(output).set(scan.pending.get(output, 0))
            if scan.next_due_in is not None:
                self._note_due(time.monotonic() + scan.next_due_in)
            return await self._drain_grouped(
                scan.due, lambda cand: (cand.output, cand.channel), self._drain
            )

    def _bucket(self, key: PaceKey) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            sender = self.senders[key[0]]
            bucket = self._buckets[key] = TokenBucket(sender.rate, sender.burst, time.monotonic())
        return bucket

    async def _drain(self, key: PaceKey, candidates: list[Candidate]) -> int:
        """Deliver one pacing key's due rows, oldest first, one at a time."""
        sent = 0
        bucket = self._bucket(key)
        for cand in candidates:
            if self._stopping:
                break
            now = time.monotonic()
            ready_at = bucket.ready_at(now)
            if ready_at > now:
                self._note_due(ready_at)
                break
            claimed = await asyncio.to_thread(self._claim, cand)
            if claimed is None:
                continue
            # Spend after the claim: a slow claim must not bunch two sends together.
            bucket.spend(time.monotonic())
            settlement = self._settlement(claimed, await self._send(claimed))
            await self._settle(settlement)
            if settlement.outcome == "sent":
                sent += 1
            elif settlement.outcome == "retry_after":
                bucket.block(time.monotonic(), settlement.delay)
                self._note_due(time.monotonic() + settlement.delay)
                break
            elif settlement.outcome == "backoff":
                self._note_due(time.monotonic() + settlement.delay)
        return sent

    def _claim(self, cand: Candidate) -> Claimed | None:
        claimed_at = time.monotonic()
        if cand.attempts < self.max_attempts:
            return claim(self.engine, cand, self.lease_seconds, claimed_at)
        # Its claims kept expiring: a worker died on it, or its sender hung each time.
        error = f"max_attempts ({self.max_attempts}) reached; claims expired"
        if fail_unclaimed(self.engine, cand, error):
            DELIVERY_FAILED.labels(cand.output, "max_attempts").inc()
            log.error("delivery_failed", reason="max_attempts", delivery_id=cand.id, error=error)
        return None

    async def _send(self, claimed: Claimed) -> Result:
        sender = self.senders[claimed.output]
        try:
            result = await asyncio.to_thread(sender.send, claimed.method, claimed.payload)
        except Exception as exc:
            log.exception("delivery_sender_raised", **_fields(claimed))
            return Retry(error=type(exc).__name__)
        if not isinstance(result, Sent | Retry | Failed):
            log.error("delivery_sender_bad_result", result=repr(result), **_fields(claimed))
            return Retry(error=f"sender returned {type(result).__name__}")
        took = time.monotonic() - claimed.claimed_at
        if took > self.lease_seconds:
            # Another replica may have claimed and sent it meanwhile.
            log.warning("delivery_outlived_lease", seconds=round(took, 3), **_fields(claimed))
        return result

    def _settlement(self, claimed: Claimed, result: Result) -> Settlement:
        now = utcnow()
        if isinstance(result, Sent):
            values: dict[str, Any] = {"state": "sent", "sent_at": now, "last_error": None}
            return Settlement(claimed, "sent", values, report=result.report)
        if isinstance(result, Failed):
            values = {"state": "failed", "last_error": result.error}
            return Settlement(claimed, "permanent", values, result.report, result.error)
        if result.after is not None:
            # The far end is busy, not the row at fault: give the attempt back.
            delay = max(0.0, result.after)
            values = {
                "attempts": claimed.attempts - 1,
                "next_attempt_at": now + timedelta(seconds=delay),
                "last_error": result.error,
            }
            return Settlement(claimed, "retry_after", values, error=result.error, delay=delay)
        if claimed.attempts >= self.max_attempts:
            error = f"max_attempts ({self.max_attempts}) reached; last error: {result.error}"
            values = {"state": "failed", "last_error": error}
            return Settlement(claimed, "max_attempts", values, error=error)
        delay = backoff_delay(claimed.attempts, self.backoff_base, self.backoff_cap, self._random)
        values = {"next_attempt_at": now + timedelta(seconds=delay), "last_error": result.error}
        return Settlement(claimed, "backoff", values, error=result.error, delay=delay)

    async def _settle(self, settlement: Settlement) -> None:
        try:
            changed = await asyncio.to_thread(
                write_settlement, self.engine, settlement, self.on_report
            )
        except Exception:
            if not settlement.final:
                raise  # nothing is lost: the lease runs out and the row is tried again
            # Delivered (or refused for good): never send it again, write it later.
            self._unrecorded[settlement.claimed.id] = settlement
            log.exception("delivery_record_failed", **_fields(settlement.claimed))
            return
        self._after_write(settlement, changed)

    def _record_unrecorded(self) -> None:
        for row_id, settlement in list(self._unrecorded.items()):
            try:
                changed = write_settlement(self.engine, settlement, self.on_report)
            except ReportHookFailed as exc:
                # Logged with its traceback the first time (in _settle); quiet until fixed.
                log.debug(
                    "delivery_record_still_failing", error=str(exc), **_fields(settlement.claimed)
                )
                continue
            del self._unrecorded[row_id]
            self._after_write(settlement, changed)

    def _after_write(self, settlement: Settlement, changed: bool) -> None:
        claimed, outcome = settlement.claimed, settlement.outcome
        fields = {**_fields(claimed), "attempts": claimed.attempts}
        if not changed:
            # Our lease ran out and another claim settled or retook the row.
            log.warning("delivery_settle_lost", outcome=outcome, **fields)
        elif outcome == "sent":
            DELIVERY_SENT.labels(claimed.output).inc()
            waited = (settlement.values["sent_at"] - claimed.created_at).total_seconds()
            DELIVERY_SECONDS.labels(claimed.output).observe(max(0.0, waited))
            log.debug("delivery_sent", **fields)
        elif outcome in ("permanent", "max_attempts"):
            DELIVERY_FAILED.labels(claimed.output, outcome).inc()
            log.error("delivery_failed", reason=outcome, error=settlement.error, **fields)
        else:
            # Retry-After is the far end pacing us, not a problem with the delivery.
            level = log.info if outcome == "retry_after" else log.warning
            level(
                "delivery_retry",
                kind=outcome,
                error=settlement.error,
                retry_in=round(settlement.delay, 3),
                **fields,
            )


def _fields(claimed: Claimed) -> dict[str, Any]:
    return {
        "delivery_id": claimed.id,
        "output": claimed.output,
        "method": claimed.method,
        "incident_id": claimed.incident_id,
    }
