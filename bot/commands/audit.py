"""`nexus-bot audit verify` and `nexus-bot db upgrade`."""

from __future__ import annotations

import sqlalchemy as sa

from bot.settings import Settings
from bot.store.audit import verify_audit_chain
from bot.store.db import make_engine, upgrade_database


def run_audit_verify(settings: Settings) -> int:
    engine = make_engine(settings.database_url)
    try:
        upgrade_database(engine)
        result = verify_audit_chain(engine)
    except sa.exc.SQLAlchemyError as exc:
        print(f"error: database unavailable: {str(exc).splitlines()[0]}")
        return 1
    finally:
        engine.dispose()
    if result.ok:
        print(f"audit chain ok: {result.rows_checked} rows verified")
        return 0
    print(f"audit chain BROKEN at row {result.first_broken_id}: {result.reason}")
    print(f"({result.rows_checked} rows checked before it)")
    return 1


def run_db_upgrade(settings: Settings) -> int:
    engine = make_engine(settings.database_url)
    try:
        upgrade_database(engine)
    except sa.exc.SQLAlchemyError as exc:
        print(f"error: database unavailable: {str(exc).splitlines()[0]}")
        return 1
    finally:
        engine.dispose()
    print(f"database at the latest schema ({engine.dialect.name})")
    return 0
