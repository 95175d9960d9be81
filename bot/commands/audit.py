"""`nexus-bot audit verify` and `nexus-bot db upgrade`."""

from __future__ import annotations

import sqlalchemy as sa

from bot.commands.database import database_unavailable, migrated_database
from bot.settings import Settings
from bot.store.audit import verify_audit_chain


def run_audit_verify(settings: Settings) -> int:
    try:
        with migrated_database(settings) as engine:
            result = verify_audit_chain(engine)
    except sa.exc.SQLAlchemyError as exc:
        return database_unavailable(exc)
    if result.ok:
        print(f"audit chain ok: {result.rows_checked} rows verified")
        return 0
    print(f"audit chain BROKEN at row {result.first_broken_id}: {result.reason}")
    print(f"({result.rows_checked} rows checked before it)")
    return 1


def run_db_upgrade(settings: Settings) -> int:
    try:
        with migrated_database(settings) as engine:
            dialect = engine.dialect.name
    except sa.exc.SQLAlchemyError as exc:
        return database_unavailable(exc)
    print(f"database at the latest schema ({dialect})")
    return 0
