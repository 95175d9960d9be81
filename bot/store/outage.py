"""One log line per database outage for a background worker, not one per retry.

The inbox worker, the outbox worker and the scheduler's sweeps each retry
every second or so while the database is away; logging every failed pass
(the outbox did, with a traceback) buries the one line an operator needs.
Each worker keeps an `OutageLog`: the first failure of an outage is a warning
with the error's first line, the repeats are DEBUG, and the first pass that
works again says the database is back, with how many passes failed meanwhile.
"""

from __future__ import annotations

import threading

import structlog

log = structlog.get_logger("bot.store")


class OutageLog:
    """Tracks one worker's view of the database: `failed` on each error, `ok` on success."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self._lock = threading.Lock()
        self._failures = 0

    @property
    def down(self) -> bool:
        return self._failures > 0

    def failed(self, error: BaseException) -> None:
        with self._lock:
            self._failures += 1
            first = self._failures == 1
        line = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        if first:
            log.warning(
                "database unavailable: retrying quietly until it is back",
                worker=self.worker,
                error=line,
            )
        else:
            log.debug("database still unavailable", worker=self.worker, error=line)

    def ok(self) -> None:
        with self._lock:
            failures, self._failures = self._failures, 0
        if failures:
            log.info("database available again", worker=self.worker, failed_passes=failures)
