"""Hold a database lock from another session, as a migration or a stray psql would."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from bot.store.db import normalise_database_url


@contextmanager
def inbox_locked(database_url: str) -> Iterator[None]:
    """Until exit, nobody else can write the inbox table: SQLite `BEGIN EXCLUSIVE`,
    PostgreSQL `LOCK TABLE inbox IN ACCESS EXCLUSIVE MODE` (then rolled back)."""
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            yield
        finally:
            holder.close()
        return
    engine = sa.create_engine(normalise_database_url(database_url))
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("LOCK TABLE inbox IN ACCESS EXCLUSIVE MODE")
            yield
            conn.rollback()
    finally:
        engine.dispose()
