"""Hash-chained audit log: hashing, concurrent appends, tamper detection."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.store.audit import (
    GENESIS_HASH,
    AuditVerification,
    append_audit,
    row_hash,
    verify_audit_chain,
)
from bot.store.models import AuditEntry

AT = datetime(2025, 6, 1, 8, 30, 0, 500, tzinfo=UTC)


def test_row_hash_is_stable_across_timezone_representations() -> None:
    cet = timezone(timedelta(hours=2))
    base = row_hash(GENESIS_HASH, AT, "U1", "incident.opened", 7, {"b": 1, "a": [1, 2]})
    assert len(base) == 64
    # Same instant in another zone, naive UTC (as SQLite returns it), reordered keys.
    assert (
        row_hash(
            GENESIS_HASH, AT.astimezone(cet), "U1", "incident.opened", 7, {"a": [1, 2], "b": 1}
        )
        == base
    )
    assert (
        row_hash(
            GENESIS_HASH, AT.replace(tzinfo=None), "U1", "incident.opened", 7, {"b": 1, "a": [1, 2]}
        )
        == base
    )
    # None detail hashes like an empty one (that is what gets stored).
    assert row_hash(GENESIS_HASH, AT, "U1", "x", None, None) == row_hash(
        GENESIS_HASH, AT, "U1", "x", None, {}
    )


def test_row_hash_covers_every_field() -> None:
    base = row_hash(GENESIS_HASH, AT, "U1", "act", 1, {"k": "v"})
    variants = [
        row_hash("1" * 64, AT, "U1", "act", 1, {"k": "v"}),
        row_hash(GENESIS_HASH, AT + timedelta(microseconds=1), "U1", "act", 1, {"k": "v"}),
        row_hash(GENESIS_HASH, AT, "U2", "act", 1, {"k": "v"}),
        row_hash(GENESIS_HASH, AT, "U1", "act2", 1, {"k": "v"}),
        row_hash(GENESIS_HASH, AT, "U1", "act", 2, {"k": "v"}),
        row_hash(GENESIS_HASH, AT, "U1", "act", None, {"k": "v"}),
        row_hash(GENESIS_HASH, AT, "U1", "act", 1, {"k": "w"}),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def _append_many(engine: sa.Engine, count: int) -> list[int]:
    ids = []
    for i in range(count):
        with Session(engine, expire_on_commit=False) as session, session.begin():
            ids.append(append_audit(session, "tester", "test.step", i % 3 or None, {"i": i}).id)
    return ids


def test_empty_log_verifies(engine: sa.Engine) -> None:
    assert verify_audit_chain(engine) == AuditVerification(ok=True, rows_checked=0)


def test_chain_links_and_round_trips(engine: sa.Engine) -> None:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        first = append_audit(
            session, "U1", "incident.opened", 1, {"nested": {"z": 1.5, "a": (1, 2)}}, at=AT
        )
        second = append_audit(session, "U2", "incident.acknowledged", 1)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert first.detail == {"nested": {"z": 1.5, "a": [1, 2]}}  # stored as JSON gives it back
    assert verify_audit_chain(engine) == AuditVerification(ok=True, rows_checked=2)


def test_concurrent_appends_keep_one_chain(
    engine: sa.Engine, race: Callable[..., list[object]]
) -> None:
    def appender(worker: int) -> None:
        for i in range(25):
            with Session(engine, expire_on_commit=False) as session, session.begin():
                append_audit(session, f"worker-{worker}", "test.concurrent", None, {"i": i})

    race(4, appender)
    result = verify_audit_chain(engine)
    assert result == AuditVerification(ok=True, rows_checked=100)


def test_modified_row_is_named(engine: sa.Engine) -> None:
    ids = _append_many(engine, 5)
    with engine.begin() as conn:
        conn.execute(sa.update(AuditEntry).where(AuditEntry.id == ids[2]).values(detail={"i": 999}))
    result = verify_audit_chain(engine)
    assert result == AuditVerification(
        ok=False, rows_checked=2, first_broken_id=ids[2], reason="hash mismatch: row was modified"
    )


def test_modified_row_with_recomputed_hash_breaks_next_link(engine: sa.Engine) -> None:
    ids = _append_many(engine, 4)
    with engine.begin() as conn:
        row = conn.execute(sa.select(AuditEntry.__table__).where(AuditEntry.id == ids[1])).one()
        forged = row_hash(row.prev_hash, row.at, "mallory", row.action, row.incident_id, row.detail)
        conn.execute(
            sa.update(AuditEntry)
            .where(AuditEntry.id == ids[1])
            .values(actor="mallory", hash=forged)
        )
    result = verify_audit_chain(engine)
    assert result.ok is False
    assert result.first_broken_id == ids[2]
    assert result.reason == (
        f"prev_hash does not match row {ids[1]}'s hash: row deleted or reordered"
    )


def test_deleted_middle_row_names_the_next_row(engine: sa.Engine) -> None:
    ids = _append_many(engine, 5)
    with engine.begin() as conn:
        conn.execute(sa.delete(AuditEntry).where(AuditEntry.id == ids[2]))
    result = verify_audit_chain(engine)
    assert result == AuditVerification(
        ok=False,
        rows_checked=2,
        first_broken_id=ids[3],
        reason=f"prev_hash does not match row {ids[1]}'s hash: row deleted or reordered",
    )


def test_deleted_first_row_is_detected(engine: sa.Engine) -> None:
    ids = _append_many(engine, 3)
    with engine.begin() as conn:
        conn.execute(sa.delete(AuditEntry).where(AuditEntry.id == ids[0]))
    result = verify_audit_chain(engine)
    assert result.first_broken_id == ids[1]
    assert result.reason == "prev_hash does not match the genesis hash: row deleted or reordered"


def test_verification_pages_through_long_logs(engine: sa.Engine) -> None:
    # More rows than one verification page (1000), appended in one transaction.
    with Session(engine, expire_on_commit=False) as session, session.begin():
        for i in range(1205):
            append_audit(session, "bulk", "test.bulk", None, {"i": i})
    assert verify_audit_chain(engine) == AuditVerification(ok=True, rows_checked=1205)


def test_forked_chain_is_refused_by_the_database(engine: sa.Engine) -> None:
    _append_many(engine, 1)
    with engine.connect() as conn:
        tip = conn.execute(sa.select(AuditEntry.hash)).scalar_one()
    # A second row claiming the same predecessor is what a lost race would write.
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.insert(AuditEntry).values(
                    at=AT, actor="x", action="fork", detail={}, prev_hash=GENESIS_HASH, hash=tip
                )
            )
    except sa.exc.IntegrityError:
        pass
    else:
        raise AssertionError("UNIQUE(prev_hash) should refuse a forked chain")
