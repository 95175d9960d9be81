"""PostgreSQL test databases: drop one even while a bot is still connected to it."""

from __future__ import annotations

import sqlalchemy as sa


def drop_database(admin: sa.Engine, name: str) -> None:
    """End every session on `name`, then drop it (FORCE: a pool may reconnect meanwhile)."""
    with admin.connect() as conn:
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
