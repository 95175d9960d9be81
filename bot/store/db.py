"""Engine construction, schema migration and readiness probing.

SQLite transactions: Python's sqlite3 module (legacy mode, Python < 3.16) only
emits BEGIN before DML, so a SELECT-then-INSERT is not isolated, and a deferred
transaction that later writes fails with SQLITE_BUSY instead of waiting. We take
over BEGIN and open every transaction with BEGIN IMMEDIATE: writers queue on
``busy_timeout`` and read-modify-write sequences (audit chain tip, idempotent
inserts) are serialised. Read-only work can opt out with the
``READ_ONLY_OPTIONS`` execution options (plain BEGIN, WAL snapshot, no write lock).

Bounded waits: a write waits at most ``lock_timeout`` for a lock held elsewhere
(PostgreSQL ``lock_timeout``; SQLite the in-process writer queue plus
``busy_timeout``, together) and then fails, so a webhook answers 503 instead of
hanging until its sender gives up. PostgreSQL statements also stop after
``statement_timeout`` when one is given (the server passes one; one-shot
commands do not). Migrations run without either limit.
"""

from __future__ import annotations

import contextlib
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

# How long a writer waits for a lock held elsewhere before failing.
DEFAULT_LOCK_TIMEOUT_S = 3.0
# Execution option: another lock wait, in seconds, for the transactions of one
# connection (the readiness probe's shorter one, the migrations' longer one).
LOCK_WAIT_OPTION = "nexus_lock_wait"
# Readiness: the database is ready when a write to the inbox can start this soon.
READINESS_WAIT_S = 1.0
# SQLite: how long migrations of several replicas wait for each other.
_MIGRATION_WAIT_S = 300.0
_HOLDS_WRITE_LOCK = "nexus_holds_write_lock"
_BUSY_CHANGED = "nexus_busy_timeout_changed"

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


def _ms(seconds: float | None) -> int:
    """Milliseconds for a PostgreSQL timeout or busy_timeout; None or 0 → 0 (no limit)."""
    return max(1, round(seconds * 1000)) if seconds else 0


def make_engine(
    url: str,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
    statement_timeout: float | None = None,
) -> sa.Engine:
    """An engine whose writes wait at most `lock_timeout` s for a lock; on
    PostgreSQL, statements stop after `statement_timeout` s (None: no limit)."""
    url = normalise_database_url(url)
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        # The default pool (5 + 10 overflow) closes overflow connections on
        # return, so a storm using ~8 at once would reconnect all the time.
        pg = sa.create_engine(
            url,
            pool_pre_ping=True,
            pool_size=12,
            max_overflow=12,
            # A request waits at most this long for a pooled connection (default 30 s),
            # so even an exhausted pool ends in a 503 the sender retries.
            pool_timeout=5,
            connect_args={"connect_timeout": 5},
        )
        limits = (f"{_ms(lock_timeout)}ms", f"{_ms(statement_timeout)}ms")

        @sa.event.listens_for(pg, "connect")
        def _on_pg_connect(dbapi_connection: Any, _record: Any) -> None:
            # SET rather than startup options, which PgBouncer refuses by default.
            with dbapi_connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('lock_timeout', %s, false), "
                    "set_config('statement_timeout', %s, false)",
                    limits,
                )
            dbapi_connection.commit()

        return pg

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
            cursor.execute(f"PRAGMA busy_timeout={_ms(lock_timeout)}")
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
    # The two waits share one budget: what the queue took, busy_timeout has less of.
    writers = threading.Lock()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        options = conn.get_execution_options()
        if options.get(READ_ONLY_OPTION):
            conn.exec_driver_sql("BEGIN")
            return
        wait = float(options.get(LOCK_WAIT_OPTION, lock_timeout))
        started = time.monotonic()
        if not conn.info.get(_HOLDS_WRITE_LOCK):
            if not writers.acquire(timeout=wait):
                raise sa.exc.OperationalError(
                    "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")
                )
            conn.info[_HOLDS_WRITE_LOCK] = True
        left = wait - (time.monotonic() - started)
        if wait != lock_timeout or left < wait - 0.05:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={_ms(max(left, 0.001))}")
            conn.info[_BUSY_CHANGED] = True
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    def _release(dbapi_connection: Any, record: Any, *_: Any) -> None:
        if record is None:
            return
        if record.info.pop(_BUSY_CHANGED, False) and dbapi_connection is not None:
            with contextlib.suppress(sqlite3.Error):
                dbapi_connection.execute(f"PRAGMA busy_timeout={_ms(lock_timeout)}")
        if record.info.pop(_HOLDS_WRITE_LOCK, False):
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
    # A migration may rightly take long, or wait for another replica's: no
    # lock or statement timeout for it (SET LOCAL: for its transactions only).
    unlimited = "SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0"
    with engine.connect().execution_options(**{LOCK_WAIT_OPTION: _MIGRATION_WAIT_S}) as conn:
        if is_pg:
            # Session-level (not xact) lock: it must stay held across the
            # commit below, and across any autocommit block a future
            # migration might need. Released explicitly in ``finally``.
            conn.exec_driver_sql(unlimited)
            conn.execute(sa.select(sa.func.pg_advisory_lock(MIGRATION_LOCK_KEY)))
            conn.commit()
        try:
            # One outer transaction: alembic sees it and runs inside it, so a
            # failing migration leaves the schema untouched (both backends
            # have transactional DDL).
            with conn.begin():
                if is_pg:
                    conn.exec_driver_sql(unlimited)
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


def database_ready(engine: sa.Engine, wait: float = READINESS_WAIT_S) -> str | None:
    """Readiness probe: None when a write to the inbox can start within `wait`
    seconds, else why not: "unreachable" or "locked". Writes nothing.

    PostgreSQL: take the lock an INSERT takes on the inbox table (ROW EXCLUSIVE:
    other writers do not block it, a LOCK TABLE or a long DDL does). SQLite:
    BEGIN IMMEDIATE, the write lock itself. Then roll back.
    """
    try:
        conn = engine.connect()
    except sa.exc.SQLAlchemyError:
        return "unreachable"
    try:
        with conn.execution_options(**{LOCK_WAIT_OPTION: wait}).begin() as tx:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql(
                    f"SET LOCAL lock_timeout = {_ms(wait)}; "
                    f"SET LOCAL statement_timeout = {_ms(wait) * 2}"
                )
                conn.exec_driver_sql("LOCK TABLE inbox IN ROW EXCLUSIVE MODE")
            else:
                conn.exec_driver_sql("SELECT 1")
            tx.rollback()
    except sa.exc.OperationalError as exc:
        return "locked" if _is_lock_wait(exc) else "unreachable"
    except sa.exc.SQLAlchemyError:
        return "unreachable"
    finally:
        conn.close()
    return None


def _is_lock_wait(exc: sa.exc.OperationalError) -> bool:
    """A lock (or statement) timeout, as opposed to a database that went away."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in ("55P03", "57014")  # lock_not_available, query_canceled
    return "locked" in str(exc.orig) or "busy" in str(exc.orig)


def database_reachable(engine: sa.Engine) -> bool:
    """Readiness probe: can we run a trivial query right now?"""
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(**READ_ONLY_OPTIONS)
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError:
        return False
    return True
