"""Scheduled drills: each replica sweeps, the database decides which tick runs (once).

Every replica calls `DrillScheduler.sweep` every few seconds (bot/app.py).
APScheduler's own cron jobs are not used for the drills: each replica has its
own scheduler and job stores must never be shared, so two replicas would both
fire. Instead the sweep asks the schedule's `CronTrigger` which fire times are
due and takes each with a compare-and-set: inserting the ``drill_ticks`` row
keyed by (schedule, fire time). The replica whose insert succeeds starts the
drill *in the same transaction*; the others get an IntegrityError and skip.

The first time a schedule is seen it only records a ``baseline`` at its latest
fire time, so a new install (or a newly added schedule) does not run last
week's drill. After that, fire times past the latest recorded tick are due:
the latest runs if it is within ``misfire_grace``; every other one (the bot
was down) is recorded as ``missed`` and reported once, in the same transaction.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
import structlog
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.domain.playbooks import LoadedPlaybooks
from bot.drills.checklist import ReviewChecklist, collect
from bot.drills.config import DrillSchedule, DrillsConfig, cron_trigger
from bot.drills.service import DrillService, Started
from bot.settings import Settings
from bot.store.db import READ_ONLY_OPTIONS
from bot.store.models import DrillTick, utcnow
from bot.store.repository import Repository

log = structlog.get_logger("bot.drills.schedule")

# Fire times looked at per schedule and sweep: a 6-second cron after a month's
# downtime has ~430,000 of them; walking them all would stall every sweep.
MAX_FIRES_PER_SWEEP = 100
# How far back the first sighting looks for a fire time (Feb 29 crons need years).
_LOOKBACK = timedelta(days=366 * 30)
_ONE_SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class MissedTicks:
    """Ticks of one schedule that will not run, reported in one message."""

    schedule_id: str
    # The first and last missed tick, in the schedule's time zone.
    first: datetime
    last: datetime
    count: int | None  # None: more than a sweep enumerates (MAX_FIRES_PER_SWEEP)
    next_run: datetime | None


class Notifier(Protocol):
    """Posts what the scheduler decided, in the transaction of the tick row that guards it."""

    def missed(self, session: Session, notice: MissedTicks) -> None: ...

    def review(self, session: Session, checklist: ReviewChecklist) -> None: ...


# -- fire times -------------------------------------------------------------------


def first_fire_at_or_after(trigger: CronTrigger, moment: datetime) -> datetime | None:
    fire: datetime | None = trigger.get_next_fire_time(None, moment)
    return fire


def fire_times_after(
    trigger: CronTrigger, after: datetime, now: datetime, limit: int = MAX_FIRES_PER_SWEEP
) -> tuple[list[datetime], bool]:
    """Fire times in (after, now], at most `limit`; True when more were left out."""
    times: list[datetime] = []
    fire = first_fire_at_or_after(trigger, after + timedelta(microseconds=1))
    while fire is not None and fire <= now:
        if len(times) == limit:
            return times, True
        times.append(fire)
        fire = first_fire_at_or_after(trigger, fire + timedelta(microseconds=1))
    return times, False


def latest_fire_at_or_before(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The last fire time ≤ now, found by bisection: a trigger only looks forward.

    Bisection on whole seconds (cron fires on whole seconds) takes ~50 trigger
    calls whatever the cron, where walking forward from a week ago would take
    100,000 for a 6-second schedule.
    """
    window = _ONE_SECOND
    while True:
        lo = now - window
        fire = first_fire_at_or_after(trigger, lo)
        if fire is not None and fire <= now:
            break
        if window >= _LOOKBACK:
            return None
        window *= 2
    # Invariant: the first fire at or after `lo` is ≤ now, at or after `hi` is > now
    # (whole seconds since the epoch).
    lo_s, hi_s = int(lo.timestamp()), int(now.timestamp()) + 1
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        fire = first_fire_at_or_after(trigger, datetime.fromtimestamp(mid, UTC))
        if fire is not None and fire <= now:
            lo_s = mid
        else:
            hi_s = mid
    return first_fire_at_or_after(trigger, datetime.fromtimestamp(lo_s, UTC))


# -- what a tick runs ------------------------------------------------------------------

# Rotation slots count from a fixed Monday, in the schedule's wall-clock time (so
# a daily 10:00 drill is 24 hours from the last one across a DST change).
_ANCHOR = datetime(2024, 1, 1)
_UNIT_SAMPLES = 60


@functools.lru_cache(maxsize=64)
def _rotation_unit(cron: str, timezone: str) -> timedelta:
    """The schedule's shortest gap between two fire times (wall clock), from a fixed start.

    Derived from the cron alone, so every replica gets the same unit: weekly
    schedules advance the rotation by one a week, daily ones by one a day, a
    10-second test schedule by one a tick.
    """
    zone = zoneinfo.ZoneInfo(timezone)
    trigger = cron_trigger(cron, zone)
    fire = first_fire_at_or_after(trigger, _ANCHOR.replace(tzinfo=zone))
    shortest: timedelta | None = None
    for _ in range(_UNIT_SAMPLES):
        if fire is None:
            break
        following = first_fire_at_or_after(trigger, fire + timedelta(microseconds=1))
        if following is None:
            break
        gap = _wall(following) - _wall(fire)
        if gap > timedelta(0) and (shortest is None or gap < shortest):
            shortest = gap
        fire = following
    return shortest or timedelta(weeks=1)


def _wall(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def rotation_scenario(drills: DrillsConfig, schedule: DrillSchedule, fire_time: datetime) -> str:
    """The one scenario a rotation tick runs: from the fire time alone, so replicas agree.

    Consecutive ticks take consecutive scenarios (sorted by id), so five weekly
    ticks rehearse all five.
    """
    unit = _rotation_unit(schedule.cron, drills.timezone)
    local = _wall(fire_time.astimezone(drills.zone()))
    slot = (local - _ANCHOR) // unit
    scenarios = sorted(drills.scenarios)
    return scenarios[slot % len(scenarios)]


def scenarios_for(drills: DrillsConfig, schedule: DrillSchedule, fire_time: datetime) -> list[str]:
    """The scenarios a tick starts; empty for the review (no drill)."""
    if schedule.run == "review":
        return []
    if schedule.run == "all":
        return list(drills.scenarios)
    if schedule.run == "rotation":
        return [rotation_scenario(drills, schedule, fire_time)] if drills.scenarios else []
    return [schedule.run]


# -- reading, for `nexus-bot drill list` -------------------------------------------------


def next_runs(settings: Settings, now: datetime | None = None) -> dict[str, datetime]:
    """Each schedule's next fire time after `now`, in the drills' time zone.

    Empty when scheduled drills are disabled: none will run.
    """
    drills = settings.drills
    if not drills.enabled:
        return {}
    now = now or utcnow()
    runs = {}
    for schedule in drills.schedules:
        fire = first_fire_at_or_after(drills.trigger(schedule), now)
        if fire is not None:
            runs[schedule.id] = fire
    return runs


def last_ticks(repo: Repository) -> dict[str, DrillTick]:
    """Each schedule's latest recorded tick (detached rows)."""
    latest = (
        sa.select(DrillTick.schedule_id, sa.func.max(DrillTick.scheduled_for).label("at"))
        .group_by(DrillTick.schedule_id)
        .subquery()
    )
    query = sa.select(DrillTick).join(
        latest,
        sa.and_(
            DrillTick.schedule_id == latest.c.schedule_id,
            DrillTick.scheduled_for == latest.c.at,
        ),
    )
    with Session(repo.engine.execution_options(**READ_ONLY_OPTIONS)) as s, s.begin():
        rows = list(s.scalars(query))
        s.expunge_all()
    return {row.schedule_id: row for row in rows}


# -- the sweep ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What one sweep records for one schedule, in one transaction."""

    schedule: DrillSchedule
    missed: list[datetime]
    more: bool
    latest: datetime
    run: bool  # the latest tick runs (within grace); else it is missed too


class DrillScheduler:
    def __init__(
        self,
        settings: Settings,
        repo: Repository,
        drills: DrillService,
        playbooks: LoadedPlaybooks,
        notify: Notifier,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.drills = drills
        self.playbooks = playbooks
        self.notify = notify

    @property
    def config(self) -> DrillsConfig:
        return self.settings.drills

    def sweep(self, now: datetime | None = None) -> int:
        """Record (and run) the ticks that fell due; returns how many rows this call wrote."""
        config = self.config
        if not config.enabled or not config.schedules:
            return 0
        now = (now or utcnow()).astimezone(UTC)
        recorded = self._latest_recorded()
        written = 0
        for schedule in config.schedules:
            written += self._sweep_one(schedule, recorded.get(schedule.id), now)
        return written

    def _latest_recorded(self) -> dict[str, datetime]:
        query = sa.select(DrillTick.schedule_id, sa.func.max(DrillTick.scheduled_for)).group_by(
            DrillTick.schedule_id
        )
        # A read-only connection: on SQLite, a sweep with nothing due (nearly
        # every one) must not take the write lock.
        engine = self.repo.engine.execution_options(**READ_ONLY_OPTIONS)
        with engine.connect() as conn:
            return {str(schedule_id): at for schedule_id, at in conn.execute(query)}

    def _sweep_one(self, schedule: DrillSchedule, last: datetime | None, now: datetime) -> int:
        trigger = self.config.trigger(schedule)
        if last is None:
            baseline = latest_fire_at_or_before(trigger, now) or now.replace(microsecond=0)
            return self._baseline(schedule, baseline, now)
        due, more = fire_times_after(trigger, last, now)
        if not due:
            return 0
        if more:
            latest = latest_fire_at_or_before(trigger, now) or due[-1]
            missed = due[:1]  # one row stands for the whole gap; the notice says so
        else:
            latest, missed = due[-1], due[:-1]
        run = now - latest <= self.config.misfire_grace
        return self._record(_Plan(schedule, missed, more, latest, run), now)

    def _baseline(self, schedule: DrillSchedule, at: datetime, now: datetime) -> int:
        tick = DrillTick(
            schedule_id=schedule.id,
            scheduled_for=at.astimezone(UTC),
            outcome="baseline",
            recorded_at=now,
            detail="first sight of the schedule: earlier ticks are not run",
        )
        try:
            with self.repo.session() as s:
                s.add(tick)
        except IntegrityError:
            return 0  # another replica recorded it first
        log.info("drill schedule baseline", schedule=schedule.id, at=at.isoformat())
        return 1

    def _record(self, plan: _Plan, now: datetime) -> int:
        """The plan's rows, notice and drill in one transaction: all of it or none.

        All or none, so a replica that lost any of the rows to another (which
        saw the same ticks, or a later `now`) posts and starts nothing, and its
        next sweep starts from what the winner recorded.
        """
        missed = [*plan.missed, *([] if plan.run else [plan.latest])]
        started: Started | None = None
        try:
            with self.repo.session() as s:
                for at in missed:
                    s.add(self._missed_row(plan, at, now))
                tick = None
                if plan.run:
                    tick = DrillTick(
                        schedule_id=plan.schedule.id,
                        scheduled_for=plan.latest.astimezone(UTC),
                        outcome="started",
                        recorded_at=now,
                    )
                    s.add(tick)
                # The compare-and-set: a row another replica holds fails here,
                # before any drill or message exists.
                s.flush()
                if missed:
                    self.notify.missed(s, self._notice(plan, missed, now))
                if tick is not None:
                    started = self._run(s, plan, tick, now)
        except IntegrityError:
            log.info("drill tick taken elsewhere", schedule=plan.schedule.id)
            return 0
        if started is not None:
            self.drills.audit_started(started, "schedule", "scheduler")
        log.info(
            "drill schedule tick",
            schedule=plan.schedule.id,
            at=plan.latest.isoformat(),
            ran=plan.run,
            missed=len(missed),
            batch=started.batch if started else None,
        )
        return len(missed) + (1 if plan.run else 0)

    def _missed_row(self, plan: _Plan, at: datetime, now: datetime) -> DrillTick:
        if at == plan.latest:
            detail = f"due {_duration(now - at)} before the sweep, beyond the misfire grace"
        elif plan.more:
            detail = (
                f"the first of more than {MAX_FIRES_PER_SWEEP} missed ticks up to "
                f"{plan.latest.astimezone(UTC).isoformat()} (the bot was down)"
            )
        else:
            detail = "the bot was down: a later tick was due"
        return DrillTick(
            schedule_id=plan.schedule.id,
            scheduled_for=at.astimezone(UTC),
            outcome="missed",
            recorded_at=now,
            detail=detail,
        )

    def _notice(self, plan: _Plan, missed: Sequence[datetime], now: datetime) -> MissedTicks:
        zone = self.config.zone()
        trigger = self.config.trigger(plan.schedule)
        last = missed[-1]
        if plan.more and plan.run:
            # Only the gap's first tick has a row; it ended just before the latest.
            before = latest_fire_at_or_before(trigger, plan.latest - timedelta(microseconds=1))
            last = before or last
        upcoming = first_fire_at_or_after(trigger, now + timedelta(microseconds=1))
        return MissedTicks(
            schedule_id=plan.schedule.id,
            first=missed[0].astimezone(zone),
            last=last.astimezone(zone),
            count=None if plan.more else len(missed),
            next_run=upcoming.astimezone(zone) if upcoming else None,
        )

    def _run(self, s: Session, plan: _Plan, tick: DrillTick, now: datetime) -> Started | None:
        schedule = plan.schedule
        if schedule.run == "review":
            zone = self.config.zone()
            self.notify.review(s, collect(s, self.playbooks, plan.latest.astimezone(zone), zone))
            tick.detail = "review checklist posted"
            return None
        scenarios = scenarios_for(self.config, schedule, plan.latest)
        if not scenarios:
            tick.detail = "no scenario configured"
            return None
        # Started now, not at the fire time: the deadline counts from the real start.
        started = self.drills.start(
            scenarios, "schedule", "scheduler", schedule_id=schedule.id, session=s, now=now
        )
        tick.batch = started.batch
        return started


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"
