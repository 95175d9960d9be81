"""Scheduled drills with two real bots on one PostgreSQL database: each tick runs once.

Both replicas sweep the schedule every 5 s with their own APScheduler; a drill
schedule firing every 10 s gives them a tick to race for every other sweep.
Whatever the timing, each tick must start one drill batch, and each drill
must open one thread in the (fake) Slack drill channel.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from bot.drills.config import DrillsConfig
from bot.drills.schedule import rotation_scenario
from bot.slack.drill_text import DRILL_TITLE_PREFIX
from bot.store.db import make_engine
from tests.fakes.slack import FakeSlack
from tests.support.bot_process import REPO_ROOT, BotProcess

DRILL_CHANNEL = "C0DRILLS"
TICKS = 2  # two consecutive ticks: enough to see them run once each and rotate
DRILLS: dict[str, Any] = {
    "timezone": "UTC",
    "schedules": [{"id": "tick", "cron": "*/10 * * * * *", "run": "rotation"}],
}


@dataclass
class Stage:
    slack: FakeSlack
    replicas: list[BotProcess]
    engine: sa.Engine
    logs: list[str] = field(default_factory=list)

    def stop(self) -> None:
        """Stop both bots once; keep their logs (a second `stop` would lose them)."""
        while self.replicas:
            bot = self.replicas.pop()
            bot.stop()
            self.logs.append(bot.stderr)


def drill_config(folder: Path) -> Path:
    """The shipped config with one drill schedule firing every 10 seconds."""
    config = yaml.safe_load((REPO_ROOT / "config" / "nexus.yaml").read_text())
    config["drills"] = DRILLS
    path = folder / "nexus.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def stage(postgres_url: str, tmp_path: Path) -> Iterator[Stage]:
    config = str(drill_config(tmp_path))
    engine = make_engine(postgres_url)
    try:
        with FakeSlack() as slack:
            replicas = [
                BotProcess(
                    postgres_url,
                    slack.url,
                    slack.token or "",
                    NEXUS_CONFIG=config,
                    NEXUS_DRILL_CHANNEL=DRILL_CHANNEL,
                )
                for _ in range(2)
            ]
            stage = Stage(slack, list(replicas), engine)
            try:
                replicas[0].start()
                replicas[1].start()  # the schema is migrated by the first
                yield stage
            finally:
                stage.stop()
                for log in stage.logs:
                    print(log[-15000:])  # shown when the test fails
    finally:
        engine.dispose()


def rows(engine: sa.Engine, query: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(query)))


def started_with_threads(stage: Stage) -> bool:
    """TICKS ticks started, and each of their drills has its thread in Slack."""
    started = rows(stage.engine, "SELECT batch FROM drill_ticks WHERE outcome = 'started'")
    roots = rows(
        stage.engine,
        "SELECT i.slack_root_ts FROM drill_runs r JOIN incidents i ON i.id = r.incident_id "
        "WHERE i.slack_root_ts IS NOT NULL",
    )
    return len(started) >= TICKS and len(roots) >= len(started)


@pytest.mark.postgres
def test_two_replicas_start_one_drill_per_tick_and_one_thread_per_drill(stage: Stage) -> None:
    began = time.monotonic()
    stage.slack.wait_for(lambda: started_with_threads(stage), timeout=90, interval=0.5)
    elapsed = time.monotonic() - began
    stage.stop()  # a still picture: no tick starts while we count

    ticks = rows(
        stage.engine,
        "SELECT scheduled_for, outcome, batch FROM drill_ticks ORDER BY scheduled_for",
    )
    assert ticks[0].outcome == "baseline"  # nothing ran for the tick before the bots came up
    started = [t for t in ticks if t.outcome == "started"]
    assert len(started) >= TICKS
    runs = rows(
        stage.engine,
        "SELECT r.batch, r.scenario, r.schedule_id, r.trigger, i.slack_root_ts "
        "FROM drill_runs r LEFT JOIN incidents i ON i.id = r.incident_id ORDER BY r.id",
    )
    # One batch per tick, one drill per batch (rotation), no drill without a tick.
    assert sorted(r.batch for r in runs) == sorted(t.batch for t in started)
    assert {(r.schedule_id, r.trigger) for r in runs} == {("tick", "schedule")}
    # Both replicas agree on the rotation: each tick ran the scenario its time names.
    config = DrillsConfig.model_validate(DRILLS)
    by_batch = {r.batch: r.scenario for r in runs}
    for tick in started:
        expected = rotation_scenario(config, config.schedules[0], tick.scheduled_for)
        assert by_batch[tick.batch] == expected
    assert len({by_batch[t.batch] for t in started}) > 1  # consecutive ticks take turns

    # One thread root per drill in the drill channel: the one its incident points at.
    # (A tick started while the bots stopped may have no thread yet: not counted.)
    drill_roots = [
        m.ts for m in stage.slack.roots(DRILL_CHANNEL) if DRILL_TITLE_PREFIX in (m.text or "")
    ]
    recorded = [r.slack_root_ts for r in runs if r.slack_root_ts is not None]
    assert len(recorded) >= TICKS
    assert sorted(drill_roots) == sorted(recorded)
    missed = [t for t in ticks if t.outcome == "missed"]
    won = [log.count('"drill schedule tick"') for log in stage.logs]
    lost = sum(log.count("drill tick taken elsewhere") for log in stage.logs)
    print(f"{len(started)} ticks in {elapsed:.1f} s: {len(missed)} missed, won {won}, lost {lost}")
