"""DrillService on real SQLite and PostgreSQL: start, apply, finish, and the drill's ladder.

The core is composed as `nexus-bot serve` composes it (bot.core.build_core) on
a migrated database; each test reads the rows back. The inbox worker's part
(handing a `drill` body to `apply`) is played by reading the inbox row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from threading import Barrier
from typing import Any

import pytest
import sqlalchemy as sa

from bot.core import Core, build_core
from bot.domain.alerts import Alert, AlertSource
from bot.domain.playbooks import load_playbooks
from bot.drills.config import default_scenarios
from bot.drills.service import DRILL_INBOX_PRIORITY, UnknownScenario
from bot.settings import Settings
from bot.store.db import make_engine
from bot.store.models import (
    DrillRun,
    InboxBatch,
    Incident,
    OutboxMessage,
    TimelineEvent,
    utcnow,
)
from bot.timeline.events import Kind
from bot.timeline.recorder import read_timeline

REPO_ROOT = Path(__file__).resolve().parents[3]
PARTICIPANT = "U0CAROL"


def make_settings(**drills: Any) -> Settings:
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
        # Every output configured, so a drill that paged or mailed would show in the outbox.
        smtp_url="smtp://127.0.0.1:9",
        pagerduty_api_token="pd-token",
        pagerduty_from_email="bot@nexus.test",
        pagerduty_routing_key="R0UTINGKEY0000000000000000000000",
        escalation={
            "levels": levels,
            "critical": ["5m", "15m", "60m"],
            "warning": ["15m", "45m", "120m"],
        },
        drills={"participants": [PARTICIPANT], **drills},
    )


def make_core(engine: sa.Engine, settings: Settings | None = None) -> Core:
    settings = settings or make_settings()
    playbooks = load_playbooks([REPO_ROOT / "playbooks"], settings.allowed_targets)
    return build_core(settings, engine, playbooks)


@pytest.fixture
def core(engine: sa.Engine) -> Core:
    return make_core(engine)


@pytest.fixture
def other_engine(database_url: str, engine: sa.Engine) -> Iterator[sa.Engine]:
    """Another replica's engine on the same (already migrated) database."""
    other = make_engine(database_url)
    yield other
    other.dispose()


def runs(engine: sa.Engine) -> list[DrillRun]:
    with sa.orm.Session(engine) as s:
        rows = list(s.scalars(sa.select(DrillRun).order_by(DrillRun.id)))
        s.expunge_all()
    return rows


def inbox(engine: sa.Engine) -> list[InboxBatch]:
    with sa.orm.Session(engine) as s:
        rows = list(s.scalars(sa.select(InboxBatch).order_by(InboxBatch.id)))
        s.expunge_all()
    return rows


def incidents(engine: sa.Engine) -> list[Incident]:
    with sa.orm.Session(engine) as s:
        rows = list(s.scalars(sa.select(Incident).order_by(Incident.id)))
        s.expunge_all()
    return rows


def events(core: Core, number: int) -> list[Any]:
    with core.repo.session() as s:
        return read_timeline(s, number)


def kinds(core: Core, number: int) -> list[str]:
    return [e.kind for e in events(core, number)]


def apply_inbox(core: Core, *, redelivered: bool = False) -> list[int]:
    """What the inbox worker does with each pending `drill` body; the incidents opened."""
    for row in inbox(core.repo.engine):
        assert row.source == "drill"
        core.drills.apply(row.body, redelivered=redelivered)
    return [run.incident_id for run in runs(core.repo.engine) if run.incident_id is not None]


def start_and_apply(core: Core, scenario: str = "ai-malfunction") -> tuple[int, int]:
    started = core.drills.start([scenario], "cli", "cli:ops")
    apply_inbox(core)
    [run] = core.drills.runs(ids=started.run_ids)
    assert run.incident_id is not None
    return run.id, run.incident_id


def complete(core: Core, number: int) -> None:
    """Acknowledge the drill incident and record each expected step as rehearsed."""
    assert core.incidents.acknowledge(number, PARTICIPANT).changed
    scenario = default_scenarios()["ai-malfunction"]
    with core.repo.session() as s:
        for request_id, step in enumerate(core.drills.expected_steps(scenario), 1):
            core.timeline.record(
                s,
                number,
                Kind.REMEDIATION_REQUESTED,
                "U0ALICE",
                request_id=request_id,
                step_id=step.step_id,
                title=step.title,
                action=step.action,
                summary="rehearsal",
                details=[],
                expires_at=(utcnow() + timedelta(minutes=15)).isoformat(),
                approvers=["U0BOB"],
                requested_by="U0ALICE",
            )
            core.timeline.record(
                s, number, Kind.REMEDIATION_APPROVED, "U0BOB", request_id=request_id
            )
            core.timeline.record(
                s,
                number,
                Kind.REMEDIATION_DONE,
                "nexus-bot",
                request_id=request_id,
                summary="rehearsed",
                checks=["dry run accepted"],
                rehearsal=True,
            )


# -- start -----------------------------------------------------------------------------


def test_start_writes_runs_and_their_inbox_rows_as_one_batch(core: Core) -> None:
    started = core.drills.start(["ai-malfunction", "data-loss"], "cli", "cli:ops")

    stored = runs(core.repo.engine)
    assert [(r.id, r.scenario) for r in stored] == started.runs
    assert {r.batch for r in stored} == {started.batch}
    assert [r.playbook_id for r in stored] == ["frenly-ai-dangerous-edit", "lost-canonical-files"]
    for run in stored:
        assert (run.state, run.trigger, run.started_by) == ("running", "cli", "cli:ops")
        assert run.incident_id is None and run.passed is None
        assert run.deadline_at - run.started_at == timedelta(minutes=30)
    rows = inbox(core.repo.engine)
    assert [(r.source, r.priority, r.state) for r in rows] == [("drill", 2, "pending")] * 2
    assert DRILL_INBOX_PRIORITY == 2
    bodies = [json.loads(r.body) for r in rows]
    assert [(b["run"], b["scenario"]) for b in bodies] == started.runs
    assert bodies[0]["alert"]["labels"]["alertname"] == "FrenlyAIDangerousEdit"
    assert [r.group_key for r in rows] == [f"drill:{run_id}" for run_id in started.run_ids]


def test_start_is_one_transaction_with_the_callers(core: Core) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort), core.repo.session() as s:
        started = core.drills.start(["ai-malfunction", "data-loss"], "slack", "U0BOB", session=s)
        assert len(started.runs) == 2
        raise Abort  # the caller's transaction rolls back: neither run nor alert stays

    assert runs(core.repo.engine) == []
    assert inbox(core.repo.engine) == []


@pytest.mark.parametrize("scenarios", [["no-such-drill"], ["ai-malfunction", "no-such-drill"], []])
def test_an_unknown_scenario_raises_and_writes_nothing(core: Core, scenarios: list[str]) -> None:
    with pytest.raises(UnknownScenario) as caught:
        core.drills.start(scenarios, "cli", "cli:ops")
    assert "known: schema-mismatch, build-failure, ai-malfunction" in str(caught.value)
    assert runs(core.repo.engine) == []
    assert inbox(core.repo.engine) == []


def test_an_unknown_trigger_is_refused(core: Core) -> None:
    with pytest.raises(ValueError, match="trigger must be one of"):
        core.drills.start(["ai-malfunction"], "cron", "cli:ops")
    assert runs(core.repo.engine) == []


# -- apply -----------------------------------------------------------------------------


def test_apply_opens_one_drill_incident_per_run_and_a_redelivery_opens_none(core: Core) -> None:
    started = core.drills.start(["ai-malfunction", "schema-mismatch"], "cli", "cli:ops")
    numbers = apply_inbox(core)
    assert len(numbers) == 2
    apply_inbox(core, redelivered=True)  # the same bodies again
    apply_inbox(core)

    opened = incidents(core.repo.engine)
    assert len(opened) == 2
    by_run = {i.drill_run_id: i for i in opened}
    for run_id, scenario in started.runs:
        incident = by_run[run_id]
        assert incident.key == f"drill/{run_id}"
        assert incident.labels["drill"] == "true"
        assert incident.playbook_id == default_scenarios()[scenario].playbook
        assert kinds(core, incident.id).count(Kind.OPENED) == 1
    [run, _] = runs(core.repo.engine)
    assert run.incident_id == by_run[run.id].id
    assert run.scorecard == {"matched_playbook": "frenly-ai-dangerous-edit"}
    opened_event = events(core, run.incident_id)[0]
    assert opened_event.fact("drill_run_id") == run.id
    assert opened_event.fact("drill_scenario") == "ai-malfunction"
    assert opened_event.actor == "cli:ops"


def test_a_drill_incident_is_never_public(core: Core) -> None:
    _, number = start_and_apply(core)
    assert core.incidents.acknowledge(number, PARTICIPANT).changed
    with core.repo.session() as s:
        core.timeline.record(s, number, Kind.UPDATE_POSTED, PARTICIPANT, status="identified")
        core.timeline.record(s, number, Kind.NOTE_ADDED, PARTICIPANT, public=True, text="x")
    assert core.incidents.resolve(number, PARTICIPANT).changed

    with core.repo.engine.connect() as conn:
        rows = conn.execute(
            sa.select(TimelineEvent.kind, TimelineEvent.public).where(
                TimelineEvent.incident_id == number
            )
        ).all()
    recorded = {kind for kind, _ in rows}
    assert {"opened", "update.posted", "resolved", "note.added"} <= recorded
    assert [(kind, public) for kind, public in rows if public] == []
    # A real incident's `opened` is public: the check above could fail.
    real = core.incidents.declare("Real outage", "U0ALICE").incidents[0]
    with core.repo.session() as s:
        assert [e.kind for e in read_timeline(s, real, public_only=True)] == ["opened"]


def test_a_drill_neither_pages_nor_mails_nor_publishes(core: Core) -> None:
    _, number = start_and_apply(core)  # critical: a real one would page and publish
    with core.repo.engine.connect() as conn:
        outputs = set(
            conn.execute(
                sa.select(OutboxMessage.output).where(OutboxMessage.incident_id == number)
            ).scalars()
        )
    assert "pagerduty" not in outputs and "email" not in outputs
    assert "slack" in outputs  # its thread


def test_a_real_alert_with_the_drills_labels_opens_its_own_incident(core: Core) -> None:
    run_id, drill_number = start_and_apply(core)
    labels = dict(default_scenarios()["ai-malfunction"].alert.labels)
    real = Alert(
        source=AlertSource.GENERIC,
        fingerprint="real-frenly",
        title="Frenly AI proposing a dangerous edit",
        labels=labels,
        group_key="real-frenly",
    )
    number = core.incidents.ingest_alerts([real]).incidents[0]
    assert number != drill_number
    by_id = {i.id: i for i in incidents(core.repo.engine)}
    assert by_id[number].drill_run_id is None
    assert by_id[drill_number].drill_run_id == run_id
    assert Kind.ALERTS_ADDED not in kinds(core, drill_number)
    # Sent again, the real alert still joins its own incident, not the drill's.
    assert core.incidents.ingest_alerts([real]).incidents == [number]


def test_a_finished_run_is_not_applied(core: Core) -> None:
    core.drills.start(["ai-malfunction"], "cli", "cli:ops")
    core.drills.sweep(now=utcnow() + timedelta(hours=1))  # past its deadline, never applied
    assert apply_inbox(core) == []
    assert incidents(core.repo.engine) == []


# -- finish ----------------------------------------------------------------------------


def race(fns: list[Callable[[], int]]) -> list[int]:
    barrier = Barrier(len(fns))

    def run(fn: Callable[[], int]) -> int:
        barrier.wait()
        return fn()

    with ThreadPoolExecutor(max_workers=len(fns)) as pool:
        return [f.result() for f in [pool.submit(run, fn) for fn in fns]]


def test_a_running_incomplete_drill_is_not_finished(core: Core) -> None:
    _, number = start_and_apply(core)
    assert core.incidents.acknowledge(number, PARTICIPANT).changed
    assert core.drills.sweep() == 0
    assert [r.state for r in runs(core.repo.engine)] == ["running"]


def test_two_replicas_sweeping_a_complete_drill_finish_it_once(
    core: Core, other_engine: sa.Engine
) -> None:
    run_id, number = start_and_apply(core)
    complete(core, number)
    other = make_core(other_engine)

    assert sorted(race([core.drills.sweep, other.drills.sweep])) == [0, 1]
    assert race([core.drills.sweep, other.drills.sweep]) == [0, 0]  # finished: nothing left
    finished = [e for e in events(core, number) if e.kind == Kind.DRILL_FINISHED]
    assert len(finished) == 1
    [run] = runs(core.repo.engine)
    assert (run.id, run.state, run.passed) == (run_id, "finished", True)
    assert run.finished_at is not None
    assert run.scorecard is not None and run.scorecard["ended"] == "completed"
    assert run.scorecard["matched_playbook"] == "frenly-ai-dangerous-edit"
    assert finished[0].fact("passed") is True
    assert finished[0].fact("participants") == [PARTICIPANT, "U0ALICE", "U0BOB"]
    [incident] = incidents(core.repo.engine)
    assert incident.status == "resolved"
    assert kinds(core, number).count(Kind.RESOLVED) == 1
    with core.repo.engine.connect() as conn:
        audited = conn.execute(
            sa.text("SELECT count(*) FROM audit_log WHERE action = 'drill.finished'")
        ).scalar_one()
    assert audited == 1


def test_a_run_past_its_deadline_without_incident_says_it_was_never_applied(core: Core) -> None:
    started = core.drills.start(["data-loss"], "schedule", "scheduler", schedule_id="weekly")
    [run] = runs(core.repo.engine)
    assert core.drills.sweep(now=run.deadline_at - timedelta(seconds=1)) == 0
    assert core.drills.sweep(now=run.deadline_at) == 1
    assert core.drills.sweep(now=run.deadline_at + timedelta(minutes=1)) == 0

    [run] = runs(core.repo.engine)
    assert run.id == started.run_ids[0]
    assert (run.state, run.passed, run.incident_id) == ("finished", False, None)
    assert run.schedule_id == "weekly"
    card = run.scorecard
    assert card is not None and card["ended"] == "timed_out"
    assert card["findings"][0] == "The drill's alert was never applied: was the bot running?"
    assert any("Nobody acknowledged" in f for f in card["findings"])
    assert [s["outcome"] for s in card["steps"]] == ["not_run"]


def test_an_applied_drill_nobody_answers_times_out_and_resolves(core: Core) -> None:
    _, number = start_and_apply(core)
    [run] = runs(core.repo.engine)
    assert core.drills.sweep(now=run.deadline_at) == 1
    [run] = runs(core.repo.engine)
    assert run.passed is False and run.scorecard is not None
    assert run.scorecard["ended"] == "timed_out"
    assert not any("never applied" in f for f in run.scorecard["findings"])
    assert incidents(core.repo.engine)[0].status == "resolved"
    assert kinds(core, number)[-2:] == [Kind.DRILL_FINISHED, Kind.RESOLVED]


# -- the drill's ladder ------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def level_events(core: Core, number: int) -> list[Any]:
    return [e for e in events(core, number) if e.kind == Kind.LEVEL_REACHED]


def test_the_drill_ladder_is_compressed_and_reaches_only_the_participants(core: Core) -> None:
    _, number = start_and_apply(core)
    [incident] = incidents(core.repo.engine)
    opened = incident.created_at.astimezone(UTC)
    clock = Clock(opened + timedelta(minutes=1, seconds=59))
    core.ladder.clock = clock
    assert core.ladder.sweep() == 0
    for minutes, level in ((2, 2), (4, 3), (6, 4)):  # drills.escalation: 2m, 4m, 6m
        clock.now = opened + timedelta(minutes=minutes)
        assert core.ladder.sweep() == 1, level
    assert core.ladder.sweep() == 0

    reached = level_events(core, number)
    assert [e.fact("level") for e in reached] == [1, 2, 3, 4]
    for event in reached:
        assert event.fact("slack") == [PARTICIPANT]
        assert event.fact("email") == []
        assert event.fact("notify_pagerduty") is False
        assert event.fact("pagerduty_level") is None
        assert event.fact("drill") is True
    with core.repo.engine.connect() as conn:
        outputs = set(
            conn.execute(
                sa.select(OutboxMessage.output).where(OutboxMessage.incident_id == number)
            ).scalars()
        )
    assert outputs == {"slack"}


def test_a_real_incident_on_the_same_core_climbs_the_full_ladder(core: Core) -> None:
    """The contrast to the drill: the same settings mail and page a real incident."""
    number = core.incidents.declare("Real outage", "U0ALICE", "frenly-ai-dangerous-edit")
    real = number.incidents[0]
    with core.repo.engine.begin() as conn:
        conn.execute(
            sa.update(Incident)
            .where(Incident.id == real)
            .values(next_escalation_at=utcnow() - timedelta(seconds=1))
        )
    assert core.ladder.sweep() == 1
    level2 = level_events(core, real)[-1]
    assert level2.fact("level") == 2
    assert level2.fact("slack") == ["U0LEVEL2"]
    assert level2.fact("email") == ["level2@nexus.test"]
    assert level2.fact("drill") is None
