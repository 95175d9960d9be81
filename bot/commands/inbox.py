"""`nexus-bot inbox status` and `nexus-bot inbox retry`: the accepted-but-not-applied queue.

A webhook body that could not be applied after every retry is kept in the
inbox as `failed` (never dropped). These commands show those rows and, once
the cause is fixed (a bad playbook, a bug, a database problem), put them back
in line for a running bot to apply.
"""

from __future__ import annotations

import sqlalchemy as sa

from bot.commands.database import database_unavailable, migrated_database
from bot.ingest.inbox import Inbox
from bot.settings import Settings


def run_inbox_status(settings: Settings) -> int:
    try:
        with migrated_database(settings) as engine:
            inbox = Inbox(engine)
            counts = inbox.counts()
            failed = inbox.failed()
    except sa.exc.SQLAlchemyError as exc:
        return database_unavailable(exc)
    print(f"inbox: {counts['pending']} pending, {counts['failed']} failed")
    for row in failed:
        first_line = (row.last_error or "?").splitlines()[0][:200] if row.last_error else "?"
        # Errors quote outside input: no terminal control characters on an operator's screen.
        error = "".join(c if c.isprintable() else "?" for c in first_line)
        print(
            f"  #{row.id} {row.source} received {row.received_at:%Y-%m-%d %H:%M:%S}Z "
            f"({row.alert_count} alerts, {row.attempts} attempts): {error}"
        )
    if counts["failed"] > len(failed):
        print(f"  … and {counts['failed'] - len(failed)} more")
    return 0


def run_inbox_retry(settings: Settings, ids: list[int], all_failed: bool) -> int:
    if not ids and not all_failed:
        print("error: name the failed rows to retry (IDs from `nexus-bot inbox status`) or --all")
        return 2
    try:
        with migrated_database(settings) as engine:
            requeued = Inbox(engine).retry(None if all_failed else ids)
    except sa.exc.SQLAlchemyError as exc:
        return database_unavailable(exc)
    missing = sorted(set(ids) - set(requeued))
    if requeued:
        print(f"requeued {len(requeued)}: " + ", ".join(f"#{n}" for n in requeued))
    elif all_failed:
        print("no failed rows to retry")
    if missing:
        print(
            "not failed rows (unknown, pending or already applied): "
            + ", ".join(f"#{n}" for n in missing)
        )
        return 1
    return 0
