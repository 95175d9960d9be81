"""PostgreSQL test databases: drop one even while a bot is connected, take one away and back."""

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


class PostgresOutage:
    """Take one test database away from its clients and give it back."""

    def __init__(self, server: str, url: str) -> None:
        self.name = url.rsplit("/", 1)[1]
        self.admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")

    def go_away(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": self.name},
            )

    def come_back(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true'))
