"""Engine setup, migrations and readiness probe, on real SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot.store.audit import verify_audit_chain
from bot.store.db import (
    MIGRATION_LOCK_KEY,
    alembic_config,
    database_reachable,
    database_ready,
    make_engine,
    normalise_database_url,
    upgrade_database,
)
from bot.store.models import Base, Incident, OutboxMessage, TimelineEvent
from bot.store.repository import Repository
from tests.support.db_locks import inbox_locked


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/nexus", "postgresql+psycopg://u:p@db:5432/nexus"),
        (
            "postgres://u@db/nexus?sslmode=require",
            "postgresql+psycopg://u@db/nexus?sslmode=require",
        ),
        ("postgresql+psycopg://u@db/nexus", "postgresql+psycopg://u@db/nexus"),
        ("sqlite:///var/lib/nexus/bot.db", "sqlite:///var/lib/nexus/bot.db"),
        ("sqlite:////abs/bot.db", "sqlite:////abs/bot.db"),
        ("sqlite://", "sqlite://"),
    ],
)
def test_normalise_database_url(given: str, expected: str) -> None:
    assert normalise_database_url(given) == expected


@pytest.mark.parametrize(
    "bad",
    ["mysql://u@db/nexus", "postgresql+psycopg2://u@db/x", "db.example.com/nexus", ""],
)
def test_normalise_database_url_rejects_other_schemes(bad: str) -> None:
    with pytest.raises(ValueError, match=r"expected sqlite:///.*postgresql://"):
        normalise_database_url(bad)


def test_sqlite_engine_pragmas_and_parent_directory(tmp_path: Path) -> None:
    db_file = tmp_path / "nested" / "dir" / "bot.db"
    engine = make_engine(f"sqlite:///{db_file}")
    try:
        with engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
            }
        assert pragma == {
            "journal_mode": "wal",
            "busy_timeout": 3000,  # DEFAULT_LOCK_TIMEOUT_S
            "foreign_keys": 1,
            "synchronous": 1,  # NORMAL
        }
        assert db_file.exists()
    finally:
        engine.dispose()


def test_sqlite_foreign_keys_are_enforced(engine: sa.Engine, database_url: str) -> None:
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO escalation_steps (incident_id, level, epoch, fired_at, actor) "
                "VALUES (999, 1, 0, :now, 'scheduler')"
            ),
            {"now": datetime.now(UTC)},
        )


def _schema_diff(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_migration_matches_models(engine: sa.Engine) -> None:
    assert _schema_diff(engine) == []


def test_schema_diff_check_is_not_vacuous(engine: sa.Engine) -> None:
    # Guard against a comparison that would report "no diff" for anything.
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_incidents_status"))
    diff = _schema_diff(engine)
    assert [d[0] for d in diff if isinstance(d, tuple)] == ["add_index"]


def test_check_constraints_match_models(engine: sa.Engine) -> None:
    # compare_metadata ignores CHECK constraints; compare their names directly.
    inspector = sa.inspect(engine)
    for table in Base.metadata.sorted_tables:
        in_db = {c["name"] for c in inspector.get_check_constraints(table.name)}
        in_models = {c.name for c in table.constraints if isinstance(c, sa.CheckConstraint)}
        assert in_db == in_models, table.name


def alembic_head() -> str:
    from alembic.script import ScriptDirectory

    from bot.store.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def test_upgrade_is_idempotent(engine: sa.Engine) -> None:
    upgrade_database(engine)
    upgrade_database(engine)
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    assert versions == [(alembic_head(),)]
    assert _schema_diff(engine) == []


def test_replicas_upgrading_at_once(database_url: str, race: Callable[..., list[object]]) -> None:
    engines = [make_engine(database_url) for _ in range(4)]
    try:
        race(4, lambda i: upgrade_database(engines[i]))
        assert _schema_diff(engines[0]) == []
    finally:
        for engine in engines:
            engine.dispose()


def test_migration_lock_released_after_upgrade(postgres_url: str) -> None:
    # After a successful upgrade the advisory lock must be released, so a
    # second engine (another replica) can migrate without waiting forever.
    first, second = make_engine(postgres_url), make_engine(postgres_url)
    try:
        upgrade_database(first)
        with second.connect() as conn:
            got = conn.execute(
                sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY}
            )
            assert got.scalar() is True
    finally:
        first.dispose()
        second.dispose()


def test_database_reachable(engine: sa.Engine) -> None:
    assert database_reachable(engine) is True


def test_database_unreachable_postgres() -> None:
    engine = make_engine("postgresql://postgres@127.0.0.1:1/nowhere")
    try:
        assert database_reachable(engine) is False
    finally:
        engine.dispose()


def test_database_unreachable_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}")  # a directory is not a database
    try:
        assert database_reachable(engine) is False
    finally:
        engine.dispose()


def test_datetimes_round_trip_as_aware_utc(engine: sa.Engine) -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    at = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=ist)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(Incident).values(
                key="k",
                source="generic",
                title="t",
                severity="info",
                status="triggered",
                playbook_id="p",
                created_at=at,
                updated_at=at,
                labels={},
            )
        )
        stored = conn.execute(sa.select(Incident.created_at)).scalar_one()
    assert stored == at
    assert stored.tzinfo == UTC
    assert stored.microsecond == 123456


def test_naive_datetimes_are_refused(engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), engine.begin() as conn:
        conn.execute(sa.update(Incident).values(updated_at=datetime(2025, 1, 1)))


def test_downgrade_to_base_and_back(engine: sa.Engine) -> None:
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
    upgrade_database(engine)
    assert _schema_diff(engine) == []


def test_sqlite_reads_do_not_wait_for_a_writer(sqlite_url: str) -> None:
    # Writers open with BEGIN IMMEDIATE; pure reads must not, or every read
    # would queue behind (and time out on) any long write transaction.
    engine = make_engine(sqlite_url)
    try:
        upgrade_database(engine)
        repo = Repository(engine)
        incident, _ = repo.open_incident("k", "generic", "t", "info", "p", {})
        with engine.begin() as writer:
            writer.execute(sa.update(Incident).values(title="uncommitted"))
            started = time.monotonic()
            assert repo.get_incident(incident.id).title == "t"  # type: ignore[union-attr]
            assert database_reachable(engine) is True
            assert verify_audit_chain(engine).ok
            assert time.monotonic() - started < 2
    finally:
        engine.dispose()


def test_sqlite_writers_in_one_process_take_turns_without_errors(
    sqlite_url: str, race: Callable[..., list[object]]
) -> None:
    # Eight threads doing read-modify-write transactions at once: every one
    # must commit (none "database is locked"), and none may lose an update.
    engine = make_engine(sqlite_url)
    try:
        upgrade_database(engine)
        repo = Repository(engine)
        incident, _ = repo.open_incident("k", "generic", "t", "info", "p", {})

        def bump(_: int) -> None:
            for _ in range(25):
                with engine.begin() as conn:
                    level = conn.execute(
                        sa.select(Incident.escalation_level).where(Incident.id == incident.id)
                    ).scalar_one()
                    conn.execute(
                        sa.update(Incident)
                        .where(Incident.id == incident.id)
                        .values(escalation_level=level + 1)
                    )

        race(8, bump)
        with engine.connect() as conn:
            level = conn.execute(sa.select(Incident.escalation_level)).scalar_one()
        assert level == 1 + 8 * 25
    finally:
        engine.dispose()


def test_sqlite_write_lock_is_released_after_a_failed_transaction(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        upgrade_database(engine)
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO alerts (incident_id) VALUES (NULL)"))
        started = time.monotonic()
        with engine.begin() as conn:  # would wait 3 s and fail if the lock leaked
            conn.execute(sa.text("DELETE FROM inbox"))
        assert time.monotonic() - started < 1
    finally:
        engine.dispose()


def test_a_write_waits_at_most_the_lock_timeout(database_url: str) -> None:
    engine = make_engine(database_url, lock_timeout=0.5)
    try:
        upgrade_database(engine)
        with inbox_locked(database_url):
            started = time.monotonic()
            with pytest.raises(sa.exc.OperationalError), engine.begin() as conn:
                conn.execute(sa.text("DELETE FROM inbox"))
            took = time.monotonic() - started
        assert 0.4 < took < 2, took
        with engine.begin() as conn:  # released: writes go through again
            conn.execute(sa.text("DELETE FROM inbox"))
    finally:
        engine.dispose()


def test_database_ready_says_locked_then_recovers(engine: sa.Engine, database_url: str) -> None:
    assert database_ready(engine) is None
    with inbox_locked(database_url):
        started = time.monotonic()
        assert database_ready(engine, wait=0.3) == "locked"
        assert time.monotonic() - started < 1.5
        assert database_reachable(engine) is True  # reads still work: only writes wait
    assert database_ready(engine) is None


def test_database_ready_unreachable(tmp_path: Path) -> None:
    for engine in (
        make_engine("postgresql://postgres@127.0.0.1:1/nowhere"),
        make_engine(f"sqlite:///{tmp_path}"),  # a directory is not a database
    ):
        try:
            assert database_ready(engine) == "unreachable"
        finally:
            engine.dispose()


def test_sqlite_busy_timeout_is_restored_after_a_shorter_wait(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url, lock_timeout=2.0, statement_timeout=None)
    try:
        upgrade_database(engine)  # waits longer than lock_timeout for other replicas
        assert database_ready(engine, wait=0.2) is None  # waits shorter
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2000
    finally:
        engine.dispose()


def test_postgres_session_limits(postgres_url: str) -> None:
    engine = make_engine(postgres_url, lock_timeout=1.5, statement_timeout=0.5)
    try:
        upgrade_database(engine)  # runs without limits, and must leave them in place
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "1500ms"
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "500ms"
            started = time.monotonic()
            with pytest.raises(sa.exc.OperationalError, match="statement timeout"):
                conn.exec_driver_sql("SELECT pg_sleep(3)")
            assert time.monotonic() - started < 2
    finally:
        engine.dispose()
    unlimited = make_engine(postgres_url)  # one-shot commands: no statement timeout
    try:
        with unlimited.connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "0"
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "3s"
    finally:
        unlimited.dispose()


def test_0005_carries_incidents_and_outbox_rows_forward(engine: sa.Engine) -> None:
    """A database from before the timeline: its incidents get opened/acknowledged/
    resolved events at their own times, its outbox rows become Slack rows."""
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
    opened = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

    def raw(at: datetime) -> datetime:
        """As the column stores it: SQLite keeps UTC wall time, PostgreSQL timestamptz."""
        return at if engine.dialect.name == "postgresql" else at.replace(tzinfo=None)

    with engine.begin() as conn:
        for number, status, acked in ((1, "resolved", True), (2, "triggered", False)):
            conn.execute(
                sa.text(
                    "INSERT INTO incidents (id, key, source, title, severity, status, playbook_id,"
                    " escalation_level, created_at, updated_at, labels, acknowledged_by,"
                    " acknowledged_at, resolved_at) VALUES (:id, :key, 'alertmanager', 't',"
                    " 'critical', :status, 'schema-mismatch', 1, :at, :at, '{}', :by, :ack, :res)"
                ),
                {
                    "id": number,
                    "key": f"k{number}",
                    "status": status,
                    "at": raw(opened),
                    "by": "U0ALICE" if acked else None,
                    "ack": raw(opened + timedelta(minutes=3)) if acked else None,
                    "res": raw(opened + timedelta(hours=1)) if status == "resolved" else None,
                },
            )
        conn.execute(
            sa.text(
                "INSERT INTO outbox (channel, method, incident_id, payload, state, attempts,"
                " next_attempt_at, created_at) VALUES ('C0X', 'chat.postMessage', 1, '{}',"
                " 'pending', 0, :at, :at)"
            ),
            {"at": raw(opened)},
        )
    upgrade_database(engine)
    assert _schema_diff(engine) == []
    with engine.connect() as conn:
        events = conn.execute(
            sa.select(TimelineEvent.incident_id, TimelineEvent.kind, TimelineEvent.actor).order_by(
                TimelineEvent.id
            )
        ).all()
        at = conn.execute(
            sa.select(TimelineEvent.at).where(TimelineEvent.kind == "acknowledged")
        ).scalar_one()
        outputs = conn.execute(sa.select(OutboxMessage.output)).scalars().all()
    assert [tuple(e) for e in events] == [
        (1, "opened", "nexus-bot"),
        (1, "acknowledged", "U0ALICE"),
        (1, "resolved", "unknown"),
        (2, "opened", "nexus-bot"),
    ]
    assert at == opened + timedelta(minutes=3)
    assert outputs == ["slack"]
