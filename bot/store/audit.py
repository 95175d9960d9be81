"""Append-only, hash-chained audit log.

Each row stores ``prev_hash`` (the previous row's ``hash``, or ``GENESIS_HASH``
for the first row) and ``hash = sha256(canonical JSON of prev_hash and the row's
fields)``. Modifying a row breaks its own hash; deleting or reordering rows
breaks the next row's link. Deleting the newest rows is not detectable from the
chain alone: anchor the latest hash elsewhere if that matters.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.store.db import READ_ONLY_OPTIONS
from bot.store.models import AuditEntry, utcnow

GENESIS_HASH = "0" * 64

# pg_advisory_xact_lock key serialising appenders (distinct from db.py's
# migration lock). Arbitrary constant; only has to be stable and unique.
AUDIT_APPEND_LOCK_KEY = 0x4E58_4155_4449_5401  # "NXAUDIT\x01"

_VERIFY_BATCH = 1000


@dataclass(frozen=True)
class AuditVerification:
    ok: bool
    rows_checked: int
    first_broken_id: int | None = None
    reason: str | None = None


def _canonical_time(at: datetime) -> str:
    # SQLite hands back naive datetimes; they were stored as UTC, so treat
    # naive as UTC. Fixed microsecond precision makes both backends (and the
    # value in memory before insert) serialise to the same string.
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _canonical_json(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def row_hash(
    prev_hash: str,
    at: datetime,
    actor: str,
    action: str,
    incident_id: int | None,
    detail: dict[str, Any] | None,
) -> str:
    payload = {
        "prev_hash": prev_hash,
        "at": _canonical_time(at),
        "actor": actor,
        "action": action,
        "incident_id": incident_id,
        "detail": detail if detail is not None else {},
    }
    return hashlib.sha256(_canonical_json(payload).encode("utf-8")).hexdigest()


def append_audit(
    session: Session,
    actor: str,
    action: str,
    incident_id: int | None = None,
    detail: dict[str, Any] | None = None,
    *,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one row inside the caller's transaction.

    On PostgreSQL this takes a transaction-scoped advisory lock that is held
    until the caller commits, so call it as the LAST write of a transaction:
    taking row locks after it would invite lock-order deadlocks. On SQLite the
    engine from ``make_engine`` opens every transaction with BEGIN IMMEDIATE,
    which already serialises writers. In both cases the UNIQUE ``prev_hash``
    turns any remaining race into an IntegrityError rather than a fork.
    """
    # Round-trip through JSON now so the hash covers exactly what the JSON
    # column will give back (tuples become lists, keys become strings), and
    # so a non-serialisable detail fails here with a clear error.
    clean_detail: dict[str, Any] = json.loads(_canonical_json(detail or {}))
    at = (at or utcnow()).astimezone(UTC)

    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(AUDIT_APPEND_LOCK_KEY)))
    prev = session.scalar(sa.select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1))
    prev_hash = prev if prev is not None else GENESIS_HASH

    entry = AuditEntry(
        at=at,
        actor=actor,
        action=action,
        incident_id=incident_id,
        detail=clean_detail,
        prev_hash=prev_hash,
        hash=row_hash(prev_hash, at, actor, action, incident_id, clean_detail),
    )
    session.add(entry)
    session.flush()
    return entry


def verify_audit_chain(engine: sa.Engine) -> AuditVerification:
    """Walk the log in id order; report the first row whose hash or link is wrong."""
    table = AuditEntry.__table__
    expected_prev = GENESIS_HASH
    prev_id: int | None = None
    checked = 0
    # One snapshot for the whole walk (REPEATABLE READ on PostgreSQL; a read
    # transaction in SQLite's WAL mode is one already), paged by id so a long
    # log is never loaded into memory at once. Read-only: no write lock held.
    options: dict[str, Any] = dict(READ_ONLY_OPTIONS)
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"
    with engine.connect() as conn, conn.execution_options(**options).begin():
        while True:
            query = sa.select(table).order_by(table.c.id).limit(_VERIFY_BATCH)
            if prev_id is not None:
                query = query.where(table.c.id > prev_id)
            rows = conn.execute(query).mappings().all()
            if not rows:
                return AuditVerification(ok=True, rows_checked=checked)
            for row in rows:
                recomputed = row_hash(
                    row["prev_hash"],
                    row["at"],
                    row["actor"],
                    row["action"],
                    row["incident_id"],
                    row["detail"],
                )
                if recomputed != row["hash"]:
                    return AuditVerification(
                        ok=False,
                        rows_checked=checked,
                        first_broken_id=row["id"],
                        reason="hash mismatch: row was modified",
                    )
                if row["prev_hash"] != expected_prev:
                    anchor = "the genesis hash" if prev_id is None else f"row {prev_id}'s hash"
                    return AuditVerification(
                        ok=False,
                        rows_checked=checked,
                        first_broken_id=row["id"],
                        reason=f"prev_hash does not match {anchor}: row deleted or reordered",
                    )
                expected_prev = row["hash"]
                prev_id = row["id"]
                checked += 1
