"""The drill schedule on real SQLite and PostgreSQL: baseline, runs once, misses, rotation.

Each `DrillScheduler` here stands for one replica: two of them, each with its
own engine, sweep the same database at the same injected `now` (no sleeping)
and the tick rows, drill runs and Slack outbox rows are read back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from threading import Barrier
from typing import Any

import pytest
import sqlalchemy as sa

from bot.core import build_core
from bot.domain.playbooks import load_playbooks
from bot.drills.schedule import (
    MAX_FIRES_PER_SWEEP,
    DrillScheduler,
    last_ticks,
    next_runs,
    rotation_scenario,
)
from bot.settings import Settings
from bot.slack.drill_notices import SlackDrillNotices
from bot.store.db import make_engine
from bot.store.models import DrillRun, DrillTick, Incident, OutboxMessage

REPO_ROOT = Path(__file__).resolve().parents[3]
DRILLS = "C0DRILLS"
WEEKLY = {"id": "weekly", "cron": "0 10 * * TUE", "run": "rotation"}
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # a Tuesday, 10:00
WEEK = timedelta(weeks=1)
FIVE = {"schema-mismatch", "build-failure", "ai-malfunction", "data-loss", "performance-issues"}


def settings_with(*schedules: dict[str, str], **drills: Any) -> Settings:
    return Settings(
        nexus_incident_channel="C0INCIDENTS",
        nexus_drill_channel=DRILLS,
        drills={"timezone": "UTC", "schedules": list(schedules), **drills},
    )


def replica(engine: sa.Engine, settings: Settings) -> DrillScheduler:
    """One bot's scheduler, composed as bot/app.py does."""
    playbooks = load_playbooks([REPO_ROOT / "playbooks"], settings.allowed_targets)
    core = build_core(settings, engine, playbooks)
    notices = SlackDrillNotices(settings.drill_channel())
    return DrillScheduler(settings, core.repo, core.drills, playbooks, notices)


@pytest.fixture
def second_engine(database_url: str, engine: sa.Engine) -> Iterator[sa.Engine]:
    """Another replica's own engine on the same (already migrated) database."""
    other = make_engine(database_url)
    yield other
    other.dispose()


def ticks(engine: sa.Engine) -> list[tuple[str, datetime, str, str | None, str | None]]:
    query = sa.select(
        DrillTick.schedule_id,
        DrillTick.scheduled_for,
        DrillTick.outcome,
        DrillTick.batch,
        DrillTick.detail,
    ).order_by(DrillTick.schedule_id, DrillTick.scheduled_for)
    with engine.connect() as conn:
        return [(r[0], r[1], r[2], r[3], r[4]) for r in conn.execute(query)]


def outcomes(engine: sa.Engine) -> list[tuple[datetime, str]]:
    return [(at, outcome) for _, at, outcome, _, _ in ticks(engine)]


def runs(engine: sa.Engine) -> list[DrillRun]:
    with sa.orm.Session(engine) as s:
        rows = list(s.scalars(sa.select(DrillRun).order_by(DrillRun.id)))
        s.expunge_all()
    return rows


def notices(engine: sa.Engine) -> list[str]:
    query = (
        sa.select(OutboxMessage.payload)
        .where(OutboxMessage.channel == DRILLS)
        .order_by(OutboxMessage.id)
    )
    with engine.connect() as conn:
        return [str(payload["text"]) for payload in conn.execute(query).scalars()]


def race(fns: list[Callable[[], int]]) -> list[int]:
    """Call each fn in its own thread, all released at the same instant."""
    barrier = Barrier(len(fns))

    def run(fn: Callable[[], int]) -> int:
        barrier.wait()
        return fn()

    with ThreadPoolExecutor(max_workers=len(fns)) as pool:
        return [f.result() for f in [pool.submit(run, fn) for fn in fns]]


def test_first_sight_records_a_baseline_and_runs_nothing(engine: sa.Engine) -> None:
    scheduler = replica(engine, settings_with(WEEKLY))
    now = T0 + timedelta(days=3)

    assert scheduler.sweep(now) == 1
    assert scheduler.sweep(now) == 0

    assert outcomes(engine) == [(T0, "baseline")]  # last Tuesday's drill is not run
    assert runs(engine) == []
    assert notices(engine) == []
    assert last_ticks(scheduler.repo)["weekly"].outcome == "baseline"


def test_a_due_tick_runs_once_across_two_replicas(
    engine: sa.Engine, second_engine: sa.Engine
) -> None:
    settings = settings_with(WEEKLY)
    one, two = replica(engine, settings), replica(second_engine, settings)
    one.sweep(T0 + timedelta(minutes=1))
    now = T0 + WEEK + timedelta(seconds=30)

    assert sorted([one.sweep(now), two.sweep(now)]) == [0, 1]
    assert one.sweep(now + timedelta(seconds=5)) == 0

    (started,) = [t for t in ticks(engine) if t[2] == "started"]
    assert started[1] == T0 + WEEK
    (run,) = runs(engine)
    assert run.batch == started[3]
    assert (run.trigger, run.started_by, run.schedule_id) == ("schedule", "scheduler", "weekly")
    assert run.started_at == now  # the deadline counts from the real start
    drills = settings.drills
    assert run.scenario == rotation_scenario(drills, drills.schedules[0], T0 + WEEK)
    assert notices(engine) == []


def test_two_replicas_sweeping_at_the_same_instant_start_one_batch(
    engine: sa.Engine, second_engine: sa.Engine
) -> None:
    settings = settings_with({**WEEKLY, "run": "all"})
    one, two = replica(engine, settings), replica(second_engine, settings)
    one.sweep(T0 + timedelta(minutes=1))
    now = T0 + WEEK + timedelta(seconds=1)

    for _ in range(3):  # the same instant, three times over: still one tick
        race([lambda: one.sweep(now), lambda: two.sweep(now)])

    assert outcomes(engine) == [(T0, "baseline"), (T0 + WEEK, "started")]
    assert len({run.batch for run in runs(engine)}) == 1
    assert len(runs(engine)) == 5


def test_a_tick_beyond_the_grace_is_missed_and_reported_once(
    engine: sa.Engine, second_engine: sa.Engine
) -> None:
    settings = settings_with(WEEKLY)
    one, two = replica(engine, settings), replica(second_engine, settings)
    one.sweep(T0 + timedelta(minutes=1))
    now = T0 + WEEK + timedelta(hours=2)  # the grace is one hour

    assert one.sweep(now) == 1
    assert two.sweep(now) == 0
    assert one.sweep(now + timedelta(minutes=1)) == 0

    (missed,) = [t for t in ticks(engine) if t[2] == "missed"]
    assert missed[1] == T0 + WEEK
    assert missed[4] is not None and "beyond the misfire grace" in missed[4]
    assert runs(engine) == []
    assert notices(engine) == [
        ":warning: Scheduled drill `weekly` of Tue 01 Dec 2026 10:00 UTC was missed "
        "(the bot was down); next: Tue 08 Dec 2026 10:00 UTC."
    ]


def test_several_missed_ticks_run_the_latest_within_the_grace(engine: sa.Engine) -> None:
    scheduler = replica(engine, settings_with(WEEKLY))
    scheduler.sweep(T0 + timedelta(minutes=1))
    now = T0 + 3 * WEEK + timedelta(minutes=10)  # down for three weeks, back just in time

    assert scheduler.sweep(now) == 3

    assert outcomes(engine) == [
        (T0, "baseline"),
        (T0 + WEEK, "missed"),
        (T0 + 2 * WEEK, "missed"),
        (T0 + 3 * WEEK, "started"),
    ]
    assert len(runs(engine)) == 1
    (notice,) = notices(engine)
    assert "2 ticks of scheduled drill `weekly`, from Tue 01 Dec 2026 10:00 UTC" in notice
    assert "to Tue 08 Dec 2026 10:00 UTC, were missed (the bot was down)" in notice


def test_rotation_cycles_through_the_five_scenarios_over_five_weeks(
    engine: sa.Engine, second_engine: sa.Engine
) -> None:
    settings = settings_with(WEEKLY)
    one, two = replica(engine, settings), replica(second_engine, settings)
    one.sweep(T0 + timedelta(minutes=1))
    for week in range(1, 6):
        (one if week % 2 else two).sweep(T0 + week * WEEK + timedelta(minutes=1))

    scenarios = [run.scenario for run in runs(engine)]
    assert len(scenarios) == 5 and set(scenarios) == FIVE
    # A fresh configuration (another replica, a restart) picks the same ones.
    again = settings_with(WEEKLY).drills
    assert scenarios == [
        rotation_scenario(again, again.schedules[0], T0 + week * WEEK) for week in range(1, 6)
    ]
    assert len({run.batch for run in runs(engine)}) == 5


def test_all_starts_every_scenario_in_one_batch(engine: sa.Engine) -> None:
    monthly = {"id": "monthly", "cron": "0 10 1-7 * WED", "run": "all"}
    scheduler = replica(engine, settings_with(monthly))
    scheduler.sweep(datetime(2026, 11, 30, tzinfo=UTC))  # baseline: Wed 4 Nov
    first_wednesday = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)

    assert scheduler.sweep(first_wednesday + timedelta(minutes=5)) == 1

    started = runs(engine)
    assert {run.scenario for run in started} == FIVE
    assert len({run.batch for run in started}) == 1
    assert outcomes(engine)[-1] == (first_wednesday, "started")


def test_a_scenario_id_starts_that_scenario(engine: sa.Engine) -> None:
    daily = {"id": "daily-data-loss", "cron": "30 9 * * *", "run": "data-loss"}
    scheduler = replica(engine, settings_with(daily))
    scheduler.sweep(T0)
    scheduler.sweep(T0 + timedelta(days=1))
    assert [run.scenario for run in runs(engine)] == ["data-loss"]


def _incident(playbook_id: str, created_at: datetime, drill_run_id: int | None = None) -> Incident:
    return Incident(
        key=f"{playbook_id}-{created_at.isoformat()}-{drill_run_id}",
        source="generic",
        title="SSOT schema mismatch",
        severity="warning",
        status="resolved",
        playbook_id=playbook_id,
        created_at=created_at,
        updated_at=created_at,
        labels={},
        drill_run_id=drill_run_id,
    )


def _finished_drill(started_at: datetime, steps: list[dict[str, Any]]) -> DrillRun:
    return DrillRun(
        scenario="schema-mismatch",
        playbook_id="schema-mismatch",
        trigger="cli",
        started_by="U0LEAD",
        batch="b-earlier",
        state="finished",
        started_at=started_at,
        deadline_at=started_at + timedelta(minutes=30),
        finished_at=started_at + timedelta(minutes=20),
        passed=False,
        scorecard={"steps": steps},
    )


def test_the_quarterly_tick_posts_the_review_checklist(engine: sa.Engine) -> None:
    quarterly = {"id": "quarterly", "cron": "0 10 1-7 1,4,7,10 MON", "run": "review"}
    scheduler = replica(engine, settings_with(quarterly))
    scheduler.sweep(datetime(2026, 11, 30, tzinfo=UTC))  # baseline: Mon 5 Oct
    reviewed = datetime(2026, 11, 16, tzinfo=UTC)  # schema-mismatch's last_reviewed
    with scheduler.repo.session() as s:
        drill = _finished_drill(
            reviewed + timedelta(days=2),
            [
                {"title": "Revert the commit", "would_work": False, "reason": "branch protected"},
                {"title": "Notify the team", "would_work": True, "reason": "ok"},
            ],
        )
        s.add(drill)
        before_review = [{"title": "Old", "would_work": False}]
        s.add(_finished_drill(reviewed - timedelta(days=30), before_review))
        s.flush()
        s.add(_incident("schema-mismatch", reviewed + timedelta(days=1)))
        s.add(_incident("schema-mismatch", reviewed - timedelta(days=1)))  # before the review
        s.add(_incident("schema-mismatch", reviewed + timedelta(days=3), drill.id))  # a drill's
    tick = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)

    assert scheduler.sweep(tick + timedelta(seconds=30)) == 1

    assert outcomes(engine)[-1] == (tick, "started")
    assert [run.batch for run in runs(engine)] == ["b-earlier", "b-earlier"]  # no drill started
    (text,) = notices(engine)
    for playbook in scheduler.playbooks.playbooks:
        assert f"`{playbook.id}`" in text
        assert playbook.review is not None
        assert f"<!subteam^{playbook.review.owner}>" in text
    schema = next(line for line in text.splitlines() if "`schema-mismatch`" in line)
    assert "last reviewed 2026-11-16; 1 incident and 1 drill since then" in schema
    assert f"failed in drill #{drill.id} (schema-mismatch): _Revert the commit_" in text
    assert "branch protected" in text
    assert "Notify the team" not in text and "Old" not in text
    assert "`review.last_reviewed`" in text.splitlines()[-1]


def test_disabled_schedules_do_nothing(engine: sa.Engine) -> None:
    settings = settings_with(WEEKLY, enabled=False)
    scheduler = replica(engine, settings)
    assert scheduler.sweep(T0 + timedelta(minutes=1)) == 0
    assert scheduler.sweep(T0 + WEEK + timedelta(minutes=1)) == 0
    assert ticks(engine) == [] and runs(engine) == []
    assert next_runs(settings, T0) == {}


def test_a_month_of_six_second_ticks_is_capped(engine: sa.Engine) -> None:
    fast = {"id": "fast", "cron": "*/6 * * * * *", "run": "data-loss"}
    scheduler = replica(engine, settings_with(fast))
    scheduler.sweep(T0)
    now = T0 + timedelta(days=30, seconds=3)

    began = time.monotonic()
    assert scheduler.sweep(now) == 2
    assert time.monotonic() - began < 5  # ~430,000 fire times were due

    assert outcomes(engine) == [
        (T0, "baseline"),
        (T0 + timedelta(seconds=6), "missed"),  # one row for the whole gap
        (T0 + timedelta(days=30), "started"),  # the latest, within the grace
    ]
    (notice,) = notices(engine)
    assert f"More than {MAX_FIRES_PER_SWEEP} ticks of scheduled drill `fast`" in notice
    assert "from Tue 24 Nov 2026 10:00:06 UTC to Thu 24 Dec 2026 09:59:54 UTC" in notice
    assert "next: Thu 24 Dec 2026 10:00:06 UTC" in notice
    assert scheduler.sweep(now + timedelta(seconds=6)) == 1  # back to one tick per sweep


def test_next_runs_and_last_ticks(engine: sa.Engine) -> None:
    quarterly = {"id": "quarterly", "cron": "0 10 1-7 1,4,7,10 MON", "run": "review"}
    settings = settings_with(WEEKLY, quarterly, timezone="Europe/Berlin")
    scheduler = replica(engine, settings)
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    upcoming = next_runs(settings, now)
    assert {k: v.isoformat() for k, v in upcoming.items()} == {
        "weekly": "2026-12-01T10:00:00+01:00",
        "quarterly": "2027-01-04T10:00:00+01:00",
    }
    assert last_ticks(scheduler.repo) == {}
    scheduler.sweep(now)
    latest = last_ticks(scheduler.repo)
    assert latest["weekly"].scheduled_for == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert latest["quarterly"].outcome == "baseline"
