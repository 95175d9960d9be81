"""Timers: APScheduler runs the sweeps; the database decides what is due.

Each process has its own in-memory job store (APScheduler forbids sharing a
job store between schedulers). The jobs only *look* at the database; every
effect is taken with a compare-and-set, so two replicas sweeping at the same
moment post each escalation level and expire each request once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import sqlalchemy as sa
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import metrics
from bot.store.outage import OutageLog

log = structlog.get_logger("bot.scheduler")


def build_scheduler(jobs: dict[str, tuple[Callable[[], object], float]]) -> AsyncIOScheduler:
    """One interval job per sweep: name → (synchronous function, every N seconds).

    The name is the job's id and name in APScheduler's own log lines
    (`escalation-sweep`, not `_in_thread.<locals>.run`).
    """
    scheduler = AsyncIOScheduler(timezone="UTC")
    for name, (function, seconds) in jobs.items():
        # From the start, so a sweep that never succeeds ages (and alerts)
        # instead of having no series at all.
        metrics.SWEEP_LAST_SUCCESS.labels(name).set_to_current_time()
        scheduler.add_job(
            _in_thread(name, function),
            "interval",
            seconds=seconds,
            id=name,
            name=name,
            max_instances=1,  # a slow sweep is never run twice at once
            coalesce=True,  # missed ticks collapse into one run
            misfire_grace_time=None,
        )
    return scheduler


def _in_thread(name: str, function: Callable[[], object]) -> Callable[[], object]:
    database = OutageLog(name)  # one line per outage, not one per tick

    async def run() -> None:
        try:
            await asyncio.to_thread(function)
        except sa.exc.SQLAlchemyError as exc:
            database.failed(exc)
            return
        except Exception:
            log.exception("sweep failed", sweep=name)
            return
        database.ok()
        metrics.SWEEP_LAST_SUCCESS.labels(name).set_to_current_time()

    run.__name__ = f"sweep_{name}"
    return run
