"""The database as the one-shot commands open it: migrated first, a clear error if away."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from bot.settings import Settings
from bot.store.db import make_engine, upgrade_database


@contextmanager
def migrated_database(settings: Settings) -> Iterator[sa.Engine]:
    """DATABASE_URL at the latest schema; disposed on exit. SQLAlchemyError if unreachable."""
    engine = make_engine(settings.database_url)
    try:
        upgrade_database(engine)
        yield engine
    finally:
        engine.dispose()


def say_unavailable(exc: sa.exc.SQLAlchemyError) -> None:
    """The one line a command prints on stderr when the database is away."""
    print(f"error: database unavailable: {str(exc).splitlines()[0]}", file=sys.stderr)


def login_name() -> str:
    """Who runs a one-shot command, for the timeline and the audit log (`cli:<name>`)."""
    try:
        return getpass.getuser()[:64]
    except Exception:  # no login name (a container without passwd entry)
        return "unknown"


def database_unavailable(exc: sa.exc.SQLAlchemyError) -> int:
    """Print the one-line reason and return the exit code for bad data/unreachable (1)."""
    print(f"error: database unavailable: {str(exc).splitlines()[0]}")
    return 1
