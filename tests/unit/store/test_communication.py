"""bot.store.communication on SQLite and PostgreSQL: roles, public status, update reminders."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from bot.store.communication import (
    assign_role,
    claim_update_reminder,
    due_update_reminders,
    record_public_update,
)
from bot.store.db import make_engine, upgrade_database
from bot.store.models import Incident
from bot.store.repository import Repository

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
EVERY = timedelta(minutes=30)
Race = Callable[..., list[Any]]


def _open(repo: Repository, key: str = "grp-1", **kw: Any) -> int:
    args: dict[str, Any] = {
        "source": "alertmanager",
        "title": "Checkout API down",
        "severity": "critical",
        "playbook_id": "latency",
        "labels": {"service": "checkout"},
        "now": T0,
    }
    args.update(kw)
    incident, created = repo.open_incident(key, **args)
    assert created
    return incident.id


def _stored(engine: sa.Engine, number: int) -> Any:
    """The incident's row as another connection sees it (only what is committed)."""
    with engine.connect() as conn:
        return conn.execute(
            sa.select(
                Incident.roles,
                Incident.public_status,
                Incident.last_public_update_at,
                Incident.update_reminded_at,
                Incident.updated_at,
            ).where(Incident.id == number)
        ).one()


def _set(engine: sa.Engine, number: int, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(Incident).where(Incident.id == number).values(**values))


def _due(repo: Repository, now: datetime, limit: int = 100) -> list[int]:
    with repo.session() as s:
        return [i.id for i in due_update_reminders(s, now, EVERY, limit)]


# -- assign_role -------------------------------------------------------------


def test_assign_role_returns_the_previous_holders_and_stores_the_roles(
    repo: Repository, engine: sa.Engine
) -> None:
    number = _open(repo)
    assert _stored(engine, number).roles is None
    later = T0 + timedelta(minutes=5)
    with repo.session() as s:
        assert assign_role(s, number, "comms", ["U0PM"], later) == []
    row = _stored(engine, number)
    assert row.roles == {"comms": ["U0PM"]}
    assert row.updated_at == later
    with repo.session() as s:
        assert assign_role(s, number, "commander", ["U0IC"], later) == []
        assert assign_role(s, number, "comms", ["U0NEW", "S0TEAM"], later) == ["U0PM"]
    assert _stored(engine, number).roles == {"comms": ["U0NEW", "S0TEAM"], "commander": ["U0IC"]}


def test_assign_role_keeps_the_roles_the_incident_opened_with(
    repo: Repository, engine: sa.Engine
) -> None:
    number = _open(repo, roles={"commander": ["U0IC"], "comms": ["U0PM"]})
    with repo.session() as s:
        assert assign_role(s, number, "comms", [], T0) == ["U0PM"]
    assert _stored(engine, number).roles == {"commander": ["U0IC"], "comms": []}


def test_assign_role_is_none_when_nothing_changes(repo: Repository, engine: sa.Engine) -> None:
    number = _open(repo, roles={"comms": ["U0PM"]})
    later = T0 + timedelta(hours=1)
    with repo.session() as s:
        assert assign_role(s, number, "comms", ["U0PM"], later) is None
        # Nobody held the role, nobody is to hold it: no change either.
        assert assign_role(s, number, "tech-lead", [], later) is None
    row = _stored(engine, number)
    assert row.roles == {"comms": ["U0PM"]}
    assert row.updated_at == T0  # not touched


def test_assign_role_is_none_without_the_incident(repo: Repository, engine: sa.Engine) -> None:
    number = _open(repo)
    with repo.session() as s:
        assert assign_role(s, number + 1000, "comms", ["U0PM"], T0) is None
    assert _stored(engine, number).roles is None


def test_assign_role_rolls_back_with_the_callers_transaction(
    repo: Repository, engine: sa.Engine
) -> None:
    number = _open(repo)
    with pytest.raises(RuntimeError, match="later step failed"), repo.session() as s:
        assert assign_role(s, number, "comms", ["U0PM"], T0) == []
        raise RuntimeError("later step failed")
    assert _stored(engine, number).roles is None


# -- record_public_update ------------------------------------------------------


def test_record_public_update_sets_the_status_and_its_time(
    repo: Repository, engine: sa.Engine
) -> None:
    number = _open(repo)
    other = _open(repo, "grp-2")
    first, second = T0 + timedelta(minutes=10), T0 + timedelta(minutes=40)
    with repo.session() as s:
        record_public_update(s, number, "investigating", first)
    row = _stored(engine, number)
    assert (row.public_status, row.last_public_update_at, row.updated_at) == (
        "investigating",
        first,
        first,
    )
    with repo.session() as s:
        record_public_update(s, number, "monitoring", second)
    row = _stored(engine, number)
    assert (row.public_status, row.last_public_update_at) == ("monitoring", second)
    untouched = _stored(engine, other)
    assert (untouched.public_status, untouched.last_public_update_at) == (None, None)


# -- due_update_reminders ------------------------------------------------------


def test_a_critical_incident_is_due_once_the_interval_since_its_start_has_passed(
    repo: Repository,
) -> None:
    number = _open(repo)
    assert _due(repo, T0 + EVERY - timedelta(seconds=1)) == []
    assert _due(repo, T0 + EVERY) == [number]
    assert _due(repo, T0 + 3 * EVERY) == [number]


def test_only_critical_unresolved_incidents_are_due(repo: Repository) -> None:
    critical = _open(repo, "critical")
    _open(repo, "warning", severity="warning")
    _open(repo, "info", severity="info")
    acknowledged = _open(repo, "acknowledged")
    assert repo.set_incident_status(acknowledged, "acknowledged", "U0A", now=T0)
    resolved = _open(repo, "resolved")
    assert repo.set_incident_status(resolved, "resolved", "U0A", now=T0)
    assert _due(repo, T0 + 2 * EVERY) == [critical, acknowledged]


def test_a_recent_public_update_postpones_the_reminder(repo: Repository) -> None:
    number = _open(repo)
    update = T0 + timedelta(hours=2)
    with repo.session() as s:
        record_public_update(s, number, "identified", update)
    assert _due(repo, update + EVERY - timedelta(seconds=1)) == []
    assert _due(repo, update + EVERY) == [number]


def test_a_recent_reminder_postpones_the_next_one(repo: Repository, engine: sa.Engine) -> None:
    number = _open(repo)
    reminded = T0 + timedelta(hours=1)
    _set(engine, number, update_reminded_at=reminded)
    assert _due(repo, reminded + EVERY - timedelta(seconds=1)) == []
    assert _due(repo, reminded + EVERY) == [number]


def test_due_reminders_are_in_incident_order_up_to_the_limit(repo: Repository) -> None:
    numbers = [_open(repo, f"grp-{i}") for i in range(4)]
    assert _due(repo, T0 + EVERY) == numbers
    assert _due(repo, T0 + EVERY, limit=2) == numbers[:2]


# -- claim_update_reminder -----------------------------------------------------


def test_claim_is_compare_and_set_on_the_last_reminder(repo: Repository, engine: sa.Engine) -> None:
    number = _open(repo)
    first, second = T0 + EVERY, T0 + 2 * EVERY
    with repo.session() as s:
        assert claim_update_reminder(s, number, None, first) is True
    assert _stored(engine, number).update_reminded_at == first
    with repo.session() as s:
        assert claim_update_reminder(s, number, None, second) is False  # seen is stale
        assert claim_update_reminder(s, number, T0, second) is False  # so is this one
    assert _stored(engine, number).update_reminded_at == first
    with repo.session() as s:
        assert claim_update_reminder(s, number, first, second) is True
    assert _stored(engine, number).update_reminded_at == second
    with repo.session() as s:
        assert claim_update_reminder(s, number + 1000, None, second) is False


def test_of_two_replicas_that_saw_the_same_value_only_one_claims(
    repo: Repository, engine: sa.Engine
) -> None:
    number = _open(repo)
    now = T0 + EVERY
    # Both replicas read the due incident, each in its own transaction.
    with repo.session() as s:
        [seen_by_a] = due_update_reminders(s, now, EVERY)
    with repo.session() as s:
        [seen_by_b] = due_update_reminders(s, now, EVERY)
    assert seen_by_a.update_reminded_at is None and seen_by_b.update_reminded_at is None
    with repo.session() as a:
        assert claim_update_reminder(a, number, seen_by_a.update_reminded_at, now)
    with repo.session() as b:
        late = now + timedelta(seconds=1)
        assert not claim_update_reminder(b, number, seen_by_b.update_reminded_at, late)
    assert _stored(engine, number).update_reminded_at == now
    # The winner's reminder now keeps the incident off the due list for an interval.
    assert _due(repo, now + EVERY - timedelta(seconds=1)) == []


@pytest.mark.parametrize("seen_offset", [None, timedelta(0)])
def test_concurrent_claims_with_the_same_seen_have_one_winner(
    repo: Repository, engine: sa.Engine, race: Race, seen_offset: timedelta | None
) -> None:
    """Concurrent transactions on PostgreSQL; SQLite serialises its writers."""
    number = _open(repo)
    seen = None if seen_offset is None else T0 + seen_offset
    if seen is not None:
        _set(engine, number, update_reminded_at=seen)
    stamps = [T0 + EVERY + timedelta(seconds=i) for i in range(8)]

    def claim(i: int) -> bool:
        with repo.session() as s:
            return claim_update_reminder(s, number, seen, stamps[i])

    wins = race(8, claim)
    assert wins.count(True) == 1
    assert _stored(engine, number).update_reminded_at == stamps[wins.index(True)]


@pytest.fixture
def pg_repo(postgres_url: str) -> Iterator[Repository]:
    engine = make_engine(postgres_url)
    upgrade_database(engine)
    yield Repository(engine)
    engine.dispose()


def _waiting_on_a_lock(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        waiting = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(waiting)


@pytest.mark.postgres
def test_a_claim_that_waited_for_the_other_transaction_loses(pg_repo: Repository) -> None:
    """B's UPDATE blocks on A's row lock, then re-checks `seen` against A's commit."""
    repo = pg_repo
    number = _open(repo)
    outcome: list[bool] = []
    with repo.session() as a:
        assert claim_update_reminder(a, number, None, T0 + EVERY)

        def replica_b() -> None:
            with repo.session() as b:
                outcome.append(claim_update_reminder(b, number, None, T0 + 2 * EVERY))

        thread = threading.Thread(target=replica_b)
        thread.start()
        deadline = time.monotonic() + 10
        while not _waiting_on_a_lock(repo.engine):
            assert time.monotonic() < deadline, "B never waited for A's row lock"
            time.sleep(0.01)
        assert outcome == []  # still blocked while A is open
    thread.join(timeout=10)
    assert outcome == [False]
    assert _stored(repo.engine, number).update_reminded_at == T0 + EVERY
