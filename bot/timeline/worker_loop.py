"""The loop every delivery worker runs: passes until stopped, woken by enqueuers.

A pass (`deliver_due`) sends what is due; between passes the worker sleeps
until the next row falls due, the poll interval passes, or a transaction that
enqueued for one of its outputs commits (`bot.timeline.queue.wake_after_commit`).
A failed pass is retried ever more slowly (capped), and a database outage is
logged once when it starts and once when it ends, not once per pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog

from bot.store.outage import OutageLog
from bot.timeline.queue import register_waker, unregister_waker

log = structlog.get_logger("bot.timeline.worker")

C = TypeVar("C")  # a due row
K = TypeVar("K", bound=Hashable)  # its pacing key


class PassLoop:
    """Base of the Slack outbox worker and the generic delivery worker."""

    def __init__(
        self,
        name: str,
        outputs: Iterable[str],
        *,
        poll_interval: float,
        max_pause: float,
        stop_grace: float,
    ) -> None:
        self.loop_name = name
        self.loop_outputs = frozenset(outputs)
        self.poll_interval = poll_interval
        self.max_pause = max_pause
        self.stop_grace = stop_grace
        self._database = OutageLog(name)
        self._next_due: float | None = None  # monotonic time something becomes sendable
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_event: asyncio.Event | None = None
        self._stopping = False
        self._run_task: asyncio.Task[None] | None = None
        self._stopped: asyncio.Event | None = None

    async def deliver_due(self) -> int:
        """One pass: send what is due; return how many were sent."""
        raise NotImplementedError

    def _started_fields(self) -> dict[str, Any]:
        return {}

    async def run(self) -> None:
        """Deliver until `stop`; errors are logged and retried, never raised.

        A `stop` that came before ``run`` got going makes it return at once.
        """
        self._loop = asyncio.get_running_loop()
        self._wake_event = asyncio.Event()
        self._stopped = asyncio.Event()
        self._run_task = asyncio.current_task()
        register_waker(self, self.loop_outputs)
        failures = 0
        log.info(f"{self.loop_name}_worker_started", **self._started_fields())
        try:
            while not self._stopping:
                self._wake_event.clear()
                try:
                    sent = await self.deliver_due()
                    failures = 0
                    self._database.ok()
                except Exception as exc:
                    failures += 1
                    pause = min(self.max_pause, self.poll_interval * float(2 ** min(failures, 16)))
                    if isinstance(exc, sa.exc.SQLAlchemyError):
                        self._database.failed(exc)  # once per outage, not once per pass
                    else:
                        log.exception(
                            f"{self.loop_name}_pass_failed", failures=failures, retry_in=pause
                        )
                    await self._sleep(pause)
                    continue
                if sent:
                    await asyncio.sleep(0)  # let the web layer in between busy passes
                    continue
                await self._sleep(self._wait_time())
        finally:
            unregister_waker(self)
            self._stopping = False  # may run again
            self._run_task = None
            self._stopped.set()
            log.info(f"{self.loop_name}_worker_stopped")

    def wake(self) -> None:
        """Look for work now. Thread-safe; enqueuers call it after committing."""
        loop, event = self._loop, self._wake_event
        if loop is None or event is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closing
            loop.call_soon_threadsafe(event.set)

    async def stop(self, grace: float | None = None) -> None:
        """Let the send in flight finish (up to `grace`, default `stop_grace`), then stop.

        A send still running after the grace is abandoned: its row stays
        claimed until the lease runs out and is then delivered again.
        """
        self._stopping = True
        self.wake()
        task, stopped = self._run_task, self._stopped
        if task is None or stopped is None or task is asyncio.current_task():
            return
        try:
            await asyncio.wait_for(stopped.wait(), self.stop_grace if grace is None else grace)
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

    async def _drain_grouped(
        self,
        candidates: Iterable[C],
        key: Callable[[C], K],
        drain: Callable[[K, list[C]], Awaitable[int]],
    ) -> int:
        """Drain the due rows of every pacing key at once (each key in order, one at a
        time); how many were sent. A key's error is raised once all keys are done."""
        groups: dict[K, list[C]] = {}
        for candidate in candidates:
            groups.setdefault(key(candidate), []).append(candidate)
        results = await asyncio.gather(
            *(drain(k, rows) for k, rows in groups.items()), return_exceptions=True
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

    def _wait_time(self) -> float:
        wait = self.poll_interval
        if self._next_due is not None:
            wait = min(wait, max(0.0, self._next_due - time.monotonic()))
        return wait
