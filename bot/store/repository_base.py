"""The repository's base: sessions and transactions, shared helpers and records.

Every public method of the repository is one short transaction (or joins the
caller's when given ``session``) and returns detached ORM objects
(``expire_on_commit=False``: loaded attributes stay readable after the session
closes; there are no relationships to lazy-load). Methods are synchronous; the
async app calls them through a thread pool.

Concurrency rules used throughout:

* Idempotent creates insert and rely on a UNIQUE constraint; the loser of a
  race gets IntegrityError, rolls back and re-reads the winner's row.
* State changes are compare-and-set ``UPDATE ... WHERE state IN (...)``; the
  row count says whether this caller won.
* The audit row is always the last write of a transaction (see
  ``append_audit``), and is committed together with the change it records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.store.db import READ_ONLY_OPTIONS
from bot.store.models import (
    WebhookDelivery,
    utcnow,
)

T = TypeVar("T")

# A race on a unique key resolves in one retry; a few more absorb the rare
# case of racing on the audit chain tip as well.
_RACE_RETRIES = 5
# Remediation states that record who decided and why.
DECISION_STATES = frozenset({"approved", "denied", "expired", "refused"})
# A request in one of these is over: its step may be requested again.
FINAL_STATES = frozenset({"denied", "expired", "refused", "succeeded", "failed"})


@dataclass(frozen=True)
class AlertRecord:
    source: str
    fingerprint: str
    status: str  # firing | resolved
    severity: str  # critical | warning | info
    title: str
    labels: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)
    starts_at: datetime = field(default_factory=utcnow)
    ends_at: datetime | None = None


def first_delivery(conn: sa.Connection, source: str, delivery_id: str, now: datetime) -> bool:
    """Record a delivery id in the caller's transaction; False if it was seen before."""
    table = cast(sa.Table, WebhookDelivery.__table__)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = (
        insert(table)
        .values(source=source, delivery_id=delivery_id, received_at=now)
        .on_conflict_do_nothing(index_elements=[table.c.source, table.c.delivery_id])
        .returning(table.c.id)
    )
    return conn.execute(stmt).scalar() is not None


def rowcount(result: sa.Result[Any]) -> int:
    return cast(sa.CursorResult[Any], result).rowcount


@dataclass(frozen=True)
class AlertSummary:
    firing: int
    resolved: int
    first_seen: datetime | None
    last_seen: datetime | None
    top_labels: list[tuple[str, str, int]]


class RepositoryBase:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # Pure reads skip SQLite's BEGIN IMMEDIATE (see bot.store.db).
        self._read_sessions = sessionmaker(
            engine.execution_options(**READ_ONLY_OPTIONS), expire_on_commit=False
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session inside one transaction: commits on normal exit, rolls back on error."""
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._read_sessions.begin() as session:
            yield session

    def _insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    @contextmanager
    def _joined(self, session: Session | None) -> Iterator[Session]:
        """The caller's session (its transaction, its commit), or a new transaction."""
        if session is not None:
            yield session
            return
        with self.session() as own:
            yield own

    @contextmanager
    def _reading(self, session: Session | None) -> Iterator[Session]:
        """The caller's session (to see its own uncommitted writes), or a read-only one."""
        if session is not None:
            yield session
            return
        with self._read() as own:
            yield own

    def _retry_on_conflict(self, attempt: Callable[[Session], T]) -> T:
        for remaining in reversed(range(_RACE_RETRIES)):
            try:
                with self.session() as session:
                    return attempt(session)
            except IntegrityError:
                if remaining == 0:
                    raise
        raise AssertionError("unreachable")
