"""Alembic environment for the NEXUS store.

Migrations only run through ``bot.store.db.upgrade_database``, which passes an
open connection (already inside a transaction and, on PostgreSQL, holding the
migration advisory lock) via ``config.attributes["connection"]``. There is no
alembic.ini and no offline/SQL-script mode.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from bot.store.models import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, sa.Connection):
    raise RuntimeError(
        "run migrations via bot.store.db.upgrade_database(engine); "
        "it passes the connection in config.attributes['connection']"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)

with context.begin_transaction():
    context.run_migrations()
