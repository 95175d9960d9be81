"""The incident duration histograms on SQLite and PostgreSQL: observed only once committed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.metrics import REGISTRY
from bot.store.models import Incident
from bot.store.repository import Repository
from bot.timeline.events import Kind
from bot.timeline.metrics_output import IncidentDurationMetrics
from bot.timeline.recorder import Output, Timeline

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ACKNOWLEDGE = "nexus_incident_time_to_acknowledge_seconds"
RESOLVE = "nexus_incident_time_to_resolve_seconds"


@pytest.fixture
def repo(engine: sa.Engine) -> Repository:
    return Repository(engine)


@pytest.fixture
def timeline() -> Timeline:
    return Timeline([IncidentDurationMetrics()])


@pytest.fixture
def playbook() -> str:
    # The registry is per process and shared by every test: a playbook label of
    # its own keeps each test's samples apart.
    return f"playbook-{uuid.uuid4().hex[:8]}"


def open_incident(repo: Repository, playbook: str, severity: str = "critical") -> int:
    incident, created = repo.open_incident(
        key=f"test:{uuid.uuid4().hex}",
        source="alertmanager",
        title="Schema mismatch on orders",
        severity=severity,
        playbook_id=playbook,
        labels={},
        now=T0,
    )
    assert created
    return incident.id


def sample(name: str, playbook: str, severity: str = "critical", **extra: str) -> float:
    value = REGISTRY.get_sample_value(name, {"severity": severity, "playbook": playbook, **extra})
    return 0.0 if value is None else value


def test_it_is_a_timeline_output_named_metrics() -> None:
    output: Output = IncidentDurationMetrics()
    assert output.name == "metrics"


def test_acknowledgement_is_observed_once_the_transaction_commits(
    repo: Repository, timeline: Timeline, playbook: str
) -> None:
    number = open_incident(repo, playbook)
    acknowledged = T0 + timedelta(minutes=5)
    with repo.session() as s:
        assert repo.set_incident_status(
            number, "acknowledged", "U0ALICE", now=acknowledged, session=s
        )
        timeline.record(s, number, Kind.ACKNOWLEDGED, "U0ALICE", at=acknowledged, via="slack")
        # Inside the transaction: the acknowledgement may still be rolled back.
        assert sample(f"{ACKNOWLEDGE}_count", playbook) == 0
    assert sample(f"{ACKNOWLEDGE}_count", playbook) == 1
    assert sample(f"{ACKNOWLEDGE}_sum", playbook) == 300
    assert sample(f"{ACKNOWLEDGE}_bucket", playbook, le="120.0") == 0
    assert sample(f"{ACKNOWLEDGE}_bucket", playbook, le="300.0") == 1
    assert sample(f"{ACKNOWLEDGE}_bucket", playbook, le="+Inf") == 1
    assert sample(f"{RESOLVE}_count", playbook) == 0


def test_resolution_is_observed_with_the_incidents_labels(
    repo: Repository, timeline: Timeline, playbook: str
) -> None:
    number = open_incident(repo, playbook, severity="warning")
    resolved = T0 + timedelta(hours=2, minutes=30)
    with repo.session() as s:
        assert repo.set_incident_status(number, "resolved", "U0BOB", now=resolved, session=s)
        timeline.record(s, number, Kind.RESOLVED, "U0BOB", at=resolved, reason="manual")
    assert sample(f"{RESOLVE}_count", playbook, "warning") == 1
    assert sample(f"{RESOLVE}_sum", playbook, "warning") == 9000
    assert sample(f"{RESOLVE}_bucket", playbook, "warning", le="7200.0") == 0
    assert sample(f"{RESOLVE}_bucket", playbook, "warning", le="14400.0") == 1
    assert sample(f"{RESOLVE}_count", playbook, "critical") == 0
    assert sample(f"{ACKNOWLEDGE}_count", playbook, "warning") == 0


def test_a_rolled_back_transaction_observes_nothing(
    repo: Repository, timeline: Timeline, playbook: str
) -> None:
    number = open_incident(repo, playbook)
    with pytest.raises(RuntimeError, match="after the event"), repo.session() as s:
        timeline.record(s, number, Kind.ACKNOWLEDGED, "U0ALICE", at=T0 + timedelta(minutes=1))
        timeline.record(s, number, Kind.RESOLVED, "U0ALICE", at=T0 + timedelta(minutes=2))
        raise RuntimeError("something failed after the event")
    assert sample(f"{ACKNOWLEDGE}_count", playbook) == 0
    assert sample(f"{RESOLVE}_count", playbook) == 0

    # The same session used again after its rollback observes only what it commits.
    with Session(repo.engine) as session:
        timeline.record(session, number, Kind.ACKNOWLEDGED, "U0ALICE", at=T0 + timedelta(hours=1))
        session.rollback()
        timeline.record(session, number, Kind.ACKNOWLEDGED, "U0BOB", at=T0 + timedelta(minutes=4))
        session.close()  # closed without commit: a rollback too
        timeline.record(session, number, Kind.ACKNOWLEDGED, "U0CAROL", at=T0 + timedelta(minutes=3))
        session.commit()
    assert sample(f"{ACKNOWLEDGE}_count", playbook) == 1
    assert sample(f"{ACKNOWLEDGE}_sum", playbook) == 180


def test_a_rolled_back_savepoint_drops_only_what_happened_inside_it(
    repo: Repository, timeline: Timeline, playbook: str
) -> None:
    number = open_incident(repo, playbook)
    with repo.session() as s:
        savepoint = s.begin_nested()
        timeline.record(s, number, Kind.ACKNOWLEDGED, "U0ALICE", at=T0 + timedelta(minutes=1))
        savepoint.rollback()
        with s.begin_nested():  # released: its event commits with the transaction
            timeline.record(s, number, Kind.RESOLVED, "U0ALICE", at=T0 + timedelta(minutes=10))
        # Releasing a savepoint is no commit: nothing is observed yet.
        assert sample(f"{RESOLVE}_count", playbook) == 0
    assert sample(f"{ACKNOWLEDGE}_count", playbook) == 0
    assert (sample(f"{RESOLVE}_count", playbook), sample(f"{RESOLVE}_sum", playbook)) == (1, 600)

    # A released savepoint whose transaction then rolls back observes nothing.
    with pytest.raises(RuntimeError), repo.session() as s:
        with s.begin_nested():
            timeline.record(s, number, Kind.RESOLVED, "U0BOB", at=T0 + timedelta(minutes=20))
        raise RuntimeError("rolled back")
    assert sample(f"{RESOLVE}_count", playbook) == 1


def test_other_events_and_unknown_incidents_observe_nothing(
    repo: Repository, timeline: Timeline, playbook: str
) -> None:
    number = open_incident(repo, playbook)
    with repo.session() as s:
        for kind in (Kind.OPENED, Kind.UNACKNOWLEDGED, Kind.REOPENED, Kind.NOTE_ADDED):
            timeline.record(s, number, kind, "U0ALICE", at=T0 + timedelta(minutes=1))
    assert sample(f"{ACKNOWLEDGE}_count", playbook) == 0
    assert sample(f"{RESOLVE}_count", playbook) == 0


def test_an_event_dated_before_the_incident_counts_as_zero(
    repo: Repository, timeline: Timeline, playbook: str
) -> None:
    # Replicas' clocks can disagree by a little; a negative time would shrink the sum.
    number = open_incident(repo, playbook)
    with repo.session() as s:
        timeline.record(s, number, Kind.ACKNOWLEDGED, "U0ALICE", at=T0 - timedelta(seconds=2))
    assert sample(f"{ACKNOWLEDGE}_count", playbook) == 1
    assert sample(f"{ACKNOWLEDGE}_sum", playbook) == 0


def test_a_drill_is_not_observed(repo: Repository, timeline: Timeline, playbook: str) -> None:
    drill, real = open_incident(repo, playbook), open_incident(repo, playbook)
    with repo.session() as s:
        s.execute(sa.update(Incident).where(Incident.id == drill).values(drill_run_id=5))
    later = T0 + timedelta(minutes=10)
    with repo.session() as s:
        for number in (drill, real):
            timeline.record(s, number, Kind.ACKNOWLEDGED, "U0ALICE", at=later, via="slack")
            timeline.record(s, number, Kind.RESOLVED, "U0ALICE", at=later, reason="manual")
    for name in (ACKNOWLEDGE, RESOLVE):
        assert sample(f"{name}_count", playbook) == 1  # the real incident's only
        assert sample(f"{name}_sum", playbook) == 600
