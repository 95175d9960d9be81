"""The escalation ladder with a controllable clock, on real SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.core import build_core
from bot.domain.alerts import Alert, AlertSource
from bot.domain.playbooks import load_playbooks
from bot.settings import Settings
from bot.store.db import make_engine, upgrade_database
from bot.store.models import Incident, OutboxMessage
from bot.store.repository import Repository

REPO_ROOT = Path(__file__).resolve().parents[3]
START = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_settings(**overrides: object) -> Settings:
    levels = [
        {
            "level": n,
            "role": role,
            "slack": [f"U0LEVEL{n}"],
            "email": [f"level{n}@nexus.test"],
            "pagerduty_level": n,
        }
        for n, role in enumerate(["Team lead", "Engineering manager", "CTO", "Executive"], 1)
    ]
    return Settings(
        nexus_incident_channel="C0INCIDENTS",
        # Outputs enqueue only what is configured; nothing is delivered in these tests.
        smtp_url="smtp://127.0.0.1:9",
        pagerduty_api_token="pd-token",
        pagerduty_from_email="bot@nexus.test",
        pagerduty_routing_key="R0UTINGKEY0000000000000000000000",
        escalation={
            "levels": levels,
            "critical": ["5m", "15m", "60m"],
            "warning": ["15m", "45m", "120m"],
        },
        **overrides,  # type: ignore[arg-type]
    )


class World:
    """Incident service + ladder on one database, with a fake clock."""

    def __init__(self, database_url: str, clock: Clock, settings: Settings | None = None) -> None:
        self.engine = make_engine(database_url)
        upgrade_database(self.engine)
        self.repo = Repository(self.engine)
        self.settings = settings or make_settings()
        playbooks = load_playbooks([REPO_ROOT / "playbooks"], self.settings.allowed_targets)
        self.core = build_core(self.settings, self.engine, playbooks)
        self.core.ladder.clock = clock
        self.service, self.ladder = self.core.incidents, self.core.ladder

    def open(self, severity: str = "critical", pagerduty_id: str | None = None) -> int:
        alert = Alert(
            source=AlertSource.PAGERDUTY if pagerduty_id else AlertSource.GENERIC,
            fingerprint=pagerduty_id or f"fp-{severity}",
            title=f"SSOT sync failed ({severity})",
            labels={"severity": severity} if not pagerduty_id else {},
            urgency="high" if pagerduty_id else None,
            group_key=pagerduty_id or f"key-{severity}",
            pagerduty_incident_id=pagerduty_id,
        )
        outcome = self.service.ingest_alerts([alert])
        number = outcome.incidents[0]
        # Pin the incident's start to the fake clock.
        # (Through the model, so the UTC column type formats the values.)
        with self.engine.begin() as conn:
            conn.execute(sa.update(Incident).where(Incident.id == number).values(created_at=START))
            conn.execute(
                sa.update(Incident)
                .where(Incident.id == number, Incident.next_escalation_at.is_not(None))
                .values(
                    next_escalation_at=START
                    + timedelta(minutes=5 if severity == "critical" else 15)
                )
            )
        return number

    def levels(self, number: int) -> list[int]:
        return [step.level for step in self.repo.escalation_steps(number)]

    def replies(self) -> list[str]:
        return [str(p.get("text", "")) for p in self.queued("slack")]

    def queued(self, output: str, method: str | None = None) -> list[dict[str, Any]]:
        """Payloads the outputs enqueued for `output` (the durable delivery queue)."""
        query = sa.select(OutboxMessage.payload).where(OutboxMessage.output == output)
        if method is not None:
            query = query.where(OutboxMessage.method == method)
        with self.engine.connect() as conn:
            return [dict(p) for p in conn.execute(query.order_by(OutboxMessage.id)).scalars()]

    @property
    def pagerduty_levels(self) -> list[tuple[str, int]]:
        return [
            (str(p["pagerduty_incident_id"]), int(p["level"]))
            for p in self.queued("pagerduty", "pagerduty.level")
        ]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_critical_climbs_on_time_with_every_route(database_url: str, clock: Clock) -> None:
    world = World(database_url, clock)
    number = world.open(pagerduty_id="PD1")
    assert world.levels(number) == [1]
    clock.advance(minutes=4, seconds=59)
    assert world.ladder.sweep() == 0
    clock.advance(seconds=1)
    assert world.ladder.sweep() == 1
    assert world.levels(number) == [1, 2]
    assert any("Level 2 — Engineering manager" in r and "<@U0LEVEL2>" in r for r in world.replies())
    assert any("not acknowledged for 5m" in r for r in world.replies())
    assert ("PD1", 2) in world.pagerduty_levels
    assert world.queued("pagerduty", "pagerduty.note")
    # A PagerDuty incident is critical but never routed back to PagerDuty for alerts;
    # escalation still mirrors the level there. Email follows the severity's routes.
    assert world.queued("pagerduty", "pagerduty.trigger") == []
    email = world.queued("email")[-1]
    assert email["to"] == ["level2@nexus.test"]
    assert "Level 2 — Engineering manager" in email["subject"]
    clock.advance(minutes=10)
    assert world.ladder.sweep() == 1
    assert world.levels(number) == [1, 2, 3]
    assert world.repo.get_incident(number).escalation_level == 3  # type: ignore[union-attr]


def test_acknowledge_stops_the_climb_and_unacknowledge_resumes(
    database_url: str, clock: Clock
) -> None:
    world = World(database_url, clock)
    number = world.open()
    clock.advance(minutes=5)
    world.ladder.sweep()
    assert world.service.acknowledge(number, "U0ALICE").changed
    clock.advance(hours=2)
    assert world.ladder.sweep() == 0
    assert world.levels(number) == [1, 2]
    world.service.change_status(number, "triggered", "pagerduty", via="pagerduty")
    assert world.ladder.sweep() == 0  # resumes from level 2: one full gap later, not at once
    clock.advance(minutes=10)
    assert world.ladder.sweep() == 1
    assert world.levels(number) == [1, 2, 3]


def test_resolve_ends_it(database_url: str, clock: Clock) -> None:
    world = World(database_url, clock)
    number = world.open()
    world.service.resolve(number, "U0ALICE")
    clock.advance(hours=3)
    assert world.ladder.sweep() == 0
    assert world.levels(number) == [1]


def test_info_never_escalates_and_warning_is_slower(database_url: str, clock: Clock) -> None:
    world = World(database_url, clock)
    info = world.open("info")
    warning = world.open("warning")
    assert world.levels(info) == []
    clock.advance(minutes=14)
    world.ladder.sweep()
    assert world.levels(warning) == [1]
    clock.advance(minutes=1)
    world.ladder.sweep()
    assert world.levels(warning) == [1, 2]
    assert world.pagerduty_levels == []  # no PagerDuty counterpart


def test_restart_fires_each_overdue_level_once(database_url: str, clock: Clock) -> None:
    world = World(database_url, clock)
    number = world.open()
    clock.advance(minutes=20)  # the bot was down through levels 2 and 3
    restarted = World(database_url, clock)
    fired = sum(restarted.ladder.sweep() for _ in range(5))
    assert fired == 2
    assert restarted.levels(number) == [1, 2, 3]
    assert sum("Level 2 —" in r for r in restarted.replies()) == 1
    assert sum("Level 3 —" in r for r in restarted.replies()) == 1


def test_two_replicas_sweeping_together_post_each_level_once(
    database_url: str, clock: Clock
) -> None:
    worlds = [World(database_url, clock) for _ in range(2)]
    number = worlds[0].open()
    clock.advance(minutes=61)
    barrier = threading.Barrier(4)

    def sweep(world: World) -> None:
        barrier.wait()
        for _ in range(4):
            world.ladder.sweep()

    threads = [threading.Thread(target=sweep, args=(w,)) for w in worlds + worlds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert worlds[0].levels(number) == [1, 2, 3, 4]
    for level in (2, 3, 4):
        assert sum(f"Level {level} —" in r for r in worlds[0].replies()) == 1


def test_escalate_by_hand_and_restart_lower(database_url: str, clock: Clock) -> None:
    world = World(database_url, clock)
    number = world.open()
    assert "level 2" in world.ladder.escalate_now(number, "U0ALICE")
    assert "level 4" in world.ladder.escalate_now(number, "U0ALICE", to_level=4)
    assert "already at level 4" in world.ladder.escalate_now(number, "U0ALICE")
    assert "level 2" in world.ladder.escalate_now(number, "U0ALICE", to_level=2)
    assert world.levels(number) == [1, 2, 4, 2]
    assert world.repo.escalation_epoch(number) == 1


def test_pagerduty_escalation_is_mirrored_not_doubled(database_url: str, clock: Clock) -> None:
    world = World(database_url, clock)
    number = world.open(pagerduty_id="PD9")
    world.service.pagerduty_note(number, "incident.escalated", {})  # PagerDuty escalated
    assert world.levels(number) == [1, 2]
    assert world.pagerduty_levels == []  # not pushed back to PagerDuty
    clock.advance(minutes=15)
    world.ladder.sweep()  # our level 3 goes to PagerDuty …
    assert world.pagerduty_levels == [("PD9", 3)]
    world.service.pagerduty_note(number, "incident.escalated", {})  # … its echo is no new level
    assert world.levels(number) == [1, 2, 3]


def test_a_redelivered_batch_opens_nothing_twice(database_url: str, clock: Clock) -> None:
    """A batch is one transaction: applied again (the inbox redelivers after a crash
    between applying and deleting), it adds alerts, never a second start."""
    world = World(database_url, clock)
    number = world.open()
    assert world.levels(number) == [1]
    alert = Alert(
        source=AlertSource.GENERIC,
        fingerprint="fp-critical",
        title="SSOT sync failed (critical)",
        labels={"severity": "critical"},
        group_key="key-critical",
    )
    world.service.ingest_alerts([alert], redelivered=True)
    world.service.ingest_alerts([alert], redelivered=True)
    assert world.levels(number) == [1]
    assert sum("Level 1" in text for text in world.replies()) == 1
    assert len(world.queued("pagerduty", "pagerduty.trigger")) == 1


def test_reopened_incident_climbs_again_from_level_1(database_url: str, clock: Clock) -> None:
    world = World(database_url, clock)
    number = world.open()
    clock.advance(minutes=5)
    world.ladder.sweep()
    world.service.resolve(number, "U0ALICE")
    alert = Alert(
        source=AlertSource.GENERIC,
        fingerprint="fp-critical",
        title="SSOT sync failed (critical)",
        labels={"severity": "critical"},
        group_key="key-critical",
    )
    world.service.ingest_alerts([alert])  # fires again
    incident = world.repo.get_incident(number)
    assert incident is not None and incident.status == "triggered"
    assert incident.escalation_level == 1
    assert world.levels(number) == [1, 2, 1]
    assert world.repo.escalation_epoch(number) == 1
    assert any("*Reopened*: 1 alert(s) firing again" in r for r in world.replies())
    # The next level is due one ladder step after the reopening, not after the start.
    assert incident.next_escalation_at == clock.now + timedelta(minutes=5)
    clock.advance(minutes=5)
    assert world.ladder.sweep() == 1
    assert world.levels(number) == [1, 2, 1, 2]
