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
from typing import Any, Literal

import structlog

log = structlog.get_logger("bot.store")


class OutageLog:
    """Tracks one worker's view of the database: `failed` on each error, `ok` on success.

    The Slack side uses it too (bot.slack.outage.DatabaseWatch), with its own
    words and level for the two lines.
    """

    def __init__(
        self,
        worker: str,
        *,
        down_event: str = "database unavailable: retrying quietly until it is back",
        back_event: str = "database available again",
        down_level: Literal["warning", "error"] = "warning",
        logger: Any = log,
    ) -> None:
        self.worker = worker
        self.down_event, self.back_event, self.down_level = down_event, back_event, down_level
        self._log = logger
        self._lock = threading.Lock()
        self._failures = 0

    @property
    def down(self) -> bool:
        return self._failures > 0

    def failed(self, error: BaseException) -> None:
        with self._lock:
            self._failures += 1
            first = self._failures == 1
        line = str(error).splitlines()[0][:300] if str(error) else ""
        fields = {"worker": self.worker, "error_type": type(error).__name__, "error": line}
        if first:
            getattr(self._log, self.down_level)(self.down_event, **fields)
        else:
            self._log.debug("database still unavailable", **fields)

    def ok(self) -> None:
        with self._lock:
            failures, self._failures = self._failures, 0
        if failures:
            self._log.info(self.back_event, worker=self.worker, failed_passes=failures)
