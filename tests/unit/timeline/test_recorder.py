"""The timeline recorder on SQLite and PostgreSQL: events and outputs share a transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.store.models import OutboxMessage, TimelineEvent
from bot.store.repository import Repository
from bot.timeline.events import PUBLIC_KINDS, Event, Kind
from bot.timeline.queue import enqueue
from bot.timeline.recorder import Output, Timeline, read_timeline

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class Recording:
    """Remembers every call: (its name, the session it was given, the event)."""

    name: str
    calls: list[tuple[str, Session, Event]]

    def on_event(self, session: Session, event: Event) -> None:
        self.calls.append((self.name, session, event))


@dataclass
class Enqueueing:
    """Like a real output: enqueues one delivery per event in the caller's transaction."""

    name: str = "test-queue"
    enqueued: list[int] = field(default_factory=list)

    def on_event(self, session: Session, event: Event) -> None:
        enqueue(
            session,
            output=self.name,
            key="test-host",
            method="test.send",
            payload={"event_id": event.id, "kind": event.kind},
            incident_id=event.incident_id,
        )
        self.enqueued.append(event.id)


class Broken:
    name = "broken"

    def on_event(self, session: Session, event: Event) -> None:
        raise RuntimeError("output failed")


@pytest.fixture
def repo(engine: sa.Engine) -> Repository:
    return Repository(engine)


def new_incident(repo: Repository, key: str = "grp-1") -> int:
    incident, created = repo.open_incident(
        key,
        source="alertmanager",
        title="Checkout API down",
        severity="critical",
        playbook_id="latency",
        labels={"service": "checkout"},
        now=T0,
    )
    assert created
    return incident.id


def event_rows(engine: sa.Engine, incident_id: int) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(
                    TimelineEvent.id,
                    TimelineEvent.kind,
                    TimelineEvent.actor,
                    TimelineEvent.public,
                    TimelineEvent.facts,
                    TimelineEvent.at,
                )
                .where(TimelineEvent.incident_id == incident_id)
                .order_by(TimelineEvent.id)
            )
        )


def outbox_rows(engine: sa.Engine, output: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(OutboxMessage.incident_id, OutboxMessage.payload, OutboxMessage.state)
                .where(OutboxMessage.output == output)
                .order_by(OutboxMessage.id)
            )
        )


# -- record ----------------------------------------------------------------


def test_record_inserts_a_row_in_the_callers_session_and_returns_its_id(
    repo: Repository, engine: sa.Engine
) -> None:
    number = new_incident(repo)
    at = T0 + timedelta(minutes=3)
    with repo.session() as s:
        event = Timeline().record(
            s, number, Kind.ACKNOWLEDGED, "U0ALICE", at=at, note="on it", via="slack"
        )
        # Visible in the caller's transaction before it commits.
        row = s.get(TimelineEvent, event.id)
        assert row is not None and row.kind == "acknowledged"
    assert event == Event(
        number, "acknowledged", "U0ALICE", at, {"note": "on it", "via": "slack"}, False, event.id
    )
    assert event.id > 0
    assert event.fact("note") == "on it"
    assert event.fact("missing", "default") == "default"
    [stored] = event_rows(engine, number)
    assert (stored.id, stored.kind, stored.actor, stored.public) == (
        event.id,
        "acknowledged",
        "U0ALICE",
        False,
    )
    assert stored.facts == {"note": "on it", "via": "slack"}
    assert stored.at == at


def test_record_stamps_the_current_time_when_none_is_given(repo: Repository) -> None:
    number = new_incident(repo)
    before = datetime.now(UTC)
    with repo.session() as s:
        event = Timeline().record(s, number, "note.added", "U0BOB", text="x", via="cli")
    after = datetime.now(UTC)
    assert before <= event.at <= after
    with repo.session() as s:
        [read] = read_timeline(s, number)
    assert read.at == event.at


def test_each_event_gets_its_own_row_id(repo: Repository, engine: sa.Engine) -> None:
    number = new_incident(repo)
    timeline = Timeline()
    with repo.session() as s:
        first = timeline.record(s, number, Kind.NOTE_ADDED, "U0A", text="one", via="slack")
        second = timeline.record(s, number, Kind.NOTE_ADDED, "U0A", text="two", via="slack")
    assert first.id != second.id
    assert [r.id for r in event_rows(engine, number)] == [first.id, second.id]


def test_outputs_are_called_in_order_with_the_same_session_and_event(repo: Repository) -> None:
    number = new_incident(repo)
    calls: list[tuple[str, Session, Event]] = []
    timeline = Timeline([Recording("slack", calls), Recording("email", calls)])
    timeline.register(Recording("pagerduty", calls))
    with repo.session() as s:
        event = timeline.record(s, number, Kind.RESOLVED, "U0ALICE", reason="manual", via="slack")
        assert [name for name, _, _ in calls] == ["slack", "email", "pagerduty"]
        assert all(session is s for _, session, _ in calls)
        assert all(seen is event for _, _, seen in calls)
        # The row exists when the outputs run: they may refer to its id.
        assert s.get(TimelineEvent, event.id) is not None


def test_what_an_output_enqueues_commits_with_the_event(
    repo: Repository, engine: sa.Engine
) -> None:
    number = new_incident(repo)
    output = Enqueueing()
    with repo.session() as s:
        event = Timeline([output]).record(
            s, number, Kind.UPDATE_POSTED, "U0PM", status="investigating", text="Looking", via="x"
        )
    assert output.enqueued == [event.id]
    assert [r.id for r in event_rows(engine, number)] == [event.id]
    [row] = outbox_rows(engine, "test-queue")
    assert (row.incident_id, row.state) == (number, "pending")
    assert row.payload == {"event_id": event.id, "kind": "update.posted"}


def test_a_rolled_back_session_keeps_neither_the_event_nor_the_outbox_row(
    repo: Repository, engine: sa.Engine
) -> None:
    number = new_incident(repo)
    output = Enqueueing()
    with pytest.raises(RuntimeError, match="the state change failed"), repo.session() as s:
        Timeline([output]).record(
            s, number, Kind.UPDATE_POSTED, "U0PM", status="identified", text="Found", via="x"
        )
        assert len(output.enqueued) == 1  # the output did run and enqueue
        assert s.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 1
        raise RuntimeError("the state change failed")
    assert event_rows(engine, number) == []
    assert outbox_rows(engine, "test-queue") == []


def test_an_output_that_fails_takes_the_event_and_earlier_outputs_rows_with_it(
    repo: Repository, engine: sa.Engine
) -> None:
    number = new_incident(repo)
    timeline = Timeline([Enqueueing(), Broken()])
    with pytest.raises(RuntimeError, match="output failed"), repo.session() as s:
        timeline.record(s, number, Kind.OPENED, "alertmanager", title="Checkout API down")
    assert event_rows(engine, number) == []
    assert outbox_rows(engine, "test-queue") == []


# -- public ----------------------------------------------------------------


def test_public_kinds_are_the_customer_facing_ones() -> None:
    assert frozenset({"opened", "resolved", "reopened", "update.posted"}) == PUBLIC_KINDS
    assert Kind.NOTE_ADDED not in PUBLIC_KINDS
    assert Kind.ROLE_ASSIGNED not in PUBLIC_KINDS
    assert Kind("update.posted") is Kind.UPDATE_POSTED


@pytest.mark.parametrize(
    ("kind", "public"),
    [
        (Kind.UPDATE_POSTED, True),
        ("update.posted", True),  # a plain string is looked up the same way
        (Kind.OPENED, True),
        (Kind.RESOLVED, True),
        (Kind.REOPENED, True),
        (Kind.NOTE_ADDED, False),
        (Kind.ACKNOWLEDGED, False),
        (Kind.UPDATE_REMINDER, False),
        ("something.new", False),
    ],
)
def test_public_defaults_from_the_kind(
    repo: Repository, engine: sa.Engine, kind: str, public: bool
) -> None:
    number = new_incident(repo)
    with repo.session() as s:
        event = Timeline().record(s, number, kind, "U0A")
    assert event.public is public
    assert event.kind == str(kind) and type(event.kind) is str
    [row] = event_rows(engine, number)
    assert (row.kind, row.public) == (str(kind), public)


def test_public_can_be_overridden_either_way(repo: Repository, engine: sa.Engine) -> None:
    number = new_incident(repo)
    with repo.session() as s:
        note = Timeline().record(s, number, Kind.NOTE_ADDED, "U0A", public=True, text="shown")
        update = Timeline().record(s, number, Kind.UPDATE_POSTED, "U0A", public=False, text="x")
    assert (note.public, update.public) == (True, False)
    assert [(r.kind, r.public) for r in event_rows(engine, number)] == [
        ("note.added", True),
        ("update.posted", False),
    ]


# -- register --------------------------------------------------------------


def test_register_refuses_a_second_output_with_the_same_name() -> None:
    calls: list[tuple[str, Session, Event]] = []
    first = Recording("email", calls)
    timeline = Timeline([first])
    with pytest.raises(ValueError, match="'email' is registered already"):
        timeline.register(Recording("email", calls))
    with pytest.raises(ValueError, match="'email' is registered already"):
        timeline.register(first)
    timeline.register(Recording("pagerduty", calls))
    assert [o.name for o in timeline.outputs] == ["email", "pagerduty"]
    assert timeline.outputs[0] is first


def test_outputs_is_a_snapshot_the_caller_cannot_change() -> None:
    timeline = Timeline()
    outputs = timeline.outputs
    assert isinstance(outputs, tuple) and outputs == ()
    timeline.register(Enqueueing())
    assert outputs == ()
    assert len(timeline.outputs) == 1


def test_test_outputs_satisfy_the_output_protocol() -> None:
    # Typed as Output: mypy checks these classes against the protocol.
    outputs: list[Output] = [Recording("r", []), Enqueueing(), Broken()]
    assert [o.name for o in outputs] == ["r", "test-queue", "broken"]


# -- read_timeline -----------------------------------------------------------


def _record_story(repo: Repository, number: int) -> list[Event]:
    timeline = Timeline()
    story: list[tuple[str, dict[str, Any]]] = [
        (Kind.OPENED, {"title": "Checkout API down"}),
        (Kind.NOTE_ADDED, {"text": "looking at the deploy", "via": "slack"}),
        (Kind.UPDATE_POSTED, {"status": "investigating", "text": "We are on it", "via": "slack"}),
        (Kind.ACKNOWLEDGED, {"via": "slack"}),
        (Kind.UPDATE_POSTED, {"status": "monitoring", "text": "Fix deployed", "via": "slack"}),
        (Kind.RESOLVED, {"reason": "manual", "via": "slack"}),
    ]
    events = []
    with repo.session() as s:
        for minute, (kind, facts) in enumerate(story):
            at = T0 + timedelta(minutes=minute)
            events.append(timeline.record(s, number, kind, "U0A", at=at, **facts))
    return events


def test_read_timeline_returns_the_incidents_events_oldest_first(repo: Repository) -> None:
    number = new_incident(repo)
    other = new_incident(repo, "grp-2")
    recorded = _record_story(repo, number)
    with repo.session() as s:
        Timeline().record(s, other, Kind.NOTE_ADDED, "U0B", text="elsewhere")
    with repo.session() as s:
        read = read_timeline(s, number)
    assert read == recorded
    assert [e.kind for e in read] == [
        "opened",
        "note.added",
        "update.posted",
        "acknowledged",
        "update.posted",
        "resolved",
    ]
    assert read[2].facts == {"status": "investigating", "text": "We are on it", "via": "slack"}


def test_read_timeline_limit_keeps_the_newest_events_still_oldest_first(
    repo: Repository,
) -> None:
    number = new_incident(repo)
    recorded = _record_story(repo, number)
    with repo.session() as s:
        assert read_timeline(s, number, limit=2) == recorded[-2:]
        assert [e.kind for e in read_timeline(s, number, limit=3)] == [
            "acknowledged",
            "update.posted",
            "resolved",
        ]
        assert read_timeline(s, number, limit=100) == recorded


def test_read_timeline_public_only_leaves_out_internal_events(repo: Repository) -> None:
    number = new_incident(repo)
    recorded = _record_story(repo, number)
    public = [e for e in recorded if e.public]
    with repo.session() as s:
        assert read_timeline(s, number, public_only=True) == public
        assert [e.kind for e in public] == ["opened", "update.posted", "update.posted", "resolved"]
        # Both: the newest public events, not the public ones among the newest.
        assert read_timeline(s, number, public_only=True, limit=3) == public[-3:]


def test_read_timeline_sees_the_callers_uncommitted_events(repo: Repository) -> None:
    number = new_incident(repo)
    empty = new_incident(repo, "grp-empty")
    with repo.session() as s:
        event = Timeline().record(s, number, Kind.NOTE_ADDED, "U0A", text="draft")
        assert read_timeline(s, number) == [event]
        assert read_timeline(s, empty) == []


def test_the_constructor_refuses_two_outputs_of_one_name() -> None:
    class Named:
        name = "email"

        def on_event(self, session: Session, event: Event) -> None:
            raise AssertionError("never called")

    with pytest.raises(ValueError, match="registered already"):
        Timeline([Named(), Named()])
