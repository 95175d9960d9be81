"""Engine construction, schema migration and readiness probing.

SQLite transactions: Python's sqlite3 module (legacy mode, Python < 3.16) only
emits BEGIN before DML, so a SELECT-then-INSERT is not isolated, and a deferred
transaction that later writes fails with SQLITE_BUSY instead of waiting. We take
over BEGIN and open every transaction with BEGIN IMMEDIATE: writers queue on
``busy_timeout`` and read-modify-write sequences (audit chain tip, idempotent
inserts) are serialised. Read-only work can opt out with the
``READ_ONLY_OPTIONS`` execution options (plain BEGIN, WAL snapshot, no write lock).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

# pg_advisory_lock key held while migrating, so several replicas starting at
# once run the migration one after another (the later ones find it done).
MIGRATION_LOCK_KEY = 0x4E58_4D49_4752_0001  # "NXMIGR" + 1

# Execution option understood by the SQLite BEGIN hook below.
READ_ONLY_OPTION = "nexus_read_only"
READ_ONLY_OPTIONS: dict[str, Any] = {READ_ONLY_OPTION: True}

# How long a SQLite writer waits for the write lock before "database is locked".
_BUSY_TIMEOUT_S = 5.0
_HOLDS_WRITE_LOCK = "nexus_holds_write_lock"

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

_PG_PREFIXES = ("postgresql://", "postgres://", "postgresql+psycopg://")
_SQLITE_PREFIXES = ("sqlite://", "sqlite+pysqlite://")


def normalise_database_url(url: str) -> str:
    """Map the URL forms platforms hand out onto the drivers we ship."""
    if url.startswith(_SQLITE_PREFIXES):
        return url
    for prefix in _PG_PREFIXES:
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    scheme = url.split("://", 1)[0] if "://" in url else "(no scheme)"
    raise ValueError(
        f"unsupported database URL scheme {scheme!r}: expected sqlite:///path/to/file.db, "
        "postgresql://..., postgres://... or postgresql+psycopg://..."
    )


def _is_memory(database: str | None) -> bool:
    return not database or database == ":memory:" or database.startswith("file::memory:")


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL (a persistent setting) unless it already is.

    The switch needs an exclusive lock and SQLite reports SQLITE_BUSY for it
    without consulting busy_timeout when another connection is mid-way, e.g.
    replicas opening a fresh file together. So retry briefly ourselves.
    """
    deadline = time.monotonic() + 5
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] in ("wal", "memory"):
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def make_engine(url: str) -> sa.Engine:
    url = normalise_database_url(url)
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        # The default pool (5 + 10 overflow) closes overflow connections on
        # return, so a storm using ~8 at once would reconnect all the time.
        return sa.create_engine(
            url,
            pool_pre_ping=True,
            pool_size=12,
            max_overflow=12,
            connect_args={"connect_timeout": 5},
        )

    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if _is_memory(parsed.database):
        # Every new connection to :memory: is a new, empty database; share one.
        kwargs["poolclass"] = sa.StaticPool
    elif parsed.database and not parsed.query.get("uri"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Stop sqlite3 from issuing its own BEGINs; _on_begin issues ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")
            _enable_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    # Writers of this process queue on a lock before BEGIN IMMEDIATE. SQLite's
    # own busy handler polls with sleeps that grow to 100 ms, so with several
    # threads writing at once a short transaction could wait ten times its
    # length; a lock hands over as soon as the holder is done. It is released
    # when the connection goes back to the pool (after COMMIT or ROLLBACK has
    # run: SQLAlchemy's commit event fires before the COMMIT itself). Other
    # processes on the same file still meet busy_timeout as before.
    writers = threading.Lock()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        if conn.get_execution_options().get(READ_ONLY_OPTION):
            conn.exec_driver_sql("BEGIN")
            return
        if not conn.info.get(_HOLDS_WRITE_LOCK):
            if not writers.acquire(timeout=_BUSY_TIMEOUT_S):
                raise sa.exc.OperationalError(
                    "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")
                )
            conn.info[_HOLDS_WRITE_LOCK] = True
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    def _release(_dbapi_connection: Any, record: Any, *_: Any) -> None:
        if record is not None and record.info.pop(_HOLDS_WRITE_LOCK, False):
            writers.release()

    sa.event.listen(engine.pool, "checkin", _release)
    sa.event.listen(engine.pool, "invalidate", _release)
    return engine


def alembic_config() -> Config:
    config = Config()
    # ConfigParser interpolation treats "%" specially; paths may contain it.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config


def upgrade_database(engine: sa.Engine) -> None:
    """Run ``alembic upgrade head`` on ``engine``; safe to call on every start."""
    config = alembic_config()
    is_pg = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        if is_pg:
            # Session-level (not xact) lock: it must stay held across the
            # commit below, and across any autocommit block a future
            # migration might need. Released explicitly in ``finally``.
            conn.execute(sa.select(sa.func.pg_advisory_lock(MIGRATION_LOCK_KEY)))
            conn.commit()
        try:
            # One outer transaction: alembic sees it and runs inside it, so a
            # failing migration leaves the schema untouched (both backends
            # have transactional DDL).
            with conn.begin():
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        except BaseException:
            if is_pg:
                # Don't trust a connection that failed mid-way to release the
                # lock; discarding it ends the session, which frees the lock.
                conn.invalidate()
            raise
        if is_pg:
            conn.execute(sa.select(sa.func.pg_advisory_unlock(MIGRATION_LOCK_KEY)))
            conn.commit()


def warm_pool(engine: sa.Engine, connections: int) -> None:
    """Open `connections` pooled connections now (best effort; they stay in the pool)."""
    opened: list[sa.Connection] = []
    try:
        for _ in range(connections):
            opened.append(engine.connect())
    except sa.exc.SQLAlchemyError:
        pass  # readiness and the webhooks report a database problem properly
    finally:
        for conn in opened:
            conn.close()


def database_reachable(engine: sa.Engine) -> bool:
    """Readiness probe: can we run a trivial query right now?"""
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(**READ_ONLY_OPTIONS)
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError:
        return False
    return True
