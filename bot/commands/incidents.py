"""`nexus-bot incidents [--open] [--json] [--limit N]`: the incidents in the database.

Text is for people: one line per incident, newest first, with everything that
came from outside (titles come from alerts) made printable. `--json` is for
scripts: the same incidents as a JSON array with ISO 8601 UTC timestamps.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.commands.database import migrated_database
from bot.settings import Settings
from bot.store.db import READ_ONLY_OPTIONS
from bot.store.models import Incident

# Exit code for a database that cannot be reached: like a bad option, the
# command could not do its job at all, and a script must not read "no incidents".
EXIT_UNAVAILABLE = 2


def run_incidents(settings: Settings, open_only: bool, as_json: bool, limit: int) -> int:
    try:
        with migrated_database(settings) as engine:
            incidents, total = _newest_incidents(engine, open_only, limit)
    except sa.exc.SQLAlchemyError as exc:
        # stderr: with --json, stdout must hold JSON or nothing.
        print(f"error: database unavailable: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if as_json:
        print(json.dumps([incident_as_json(incident) for incident in incidents], indent=2))
    elif not incidents:
        print("No open incidents." if open_only else "No incidents.")
    else:
        for incident in incidents:
            print(incident_line(incident))
    if total > len(incidents):
        print(f"(the newest {len(incidents)} of {total}; see --limit)", file=sys.stderr)
    return 0


def _newest_incidents(engine: sa.Engine, open_only: bool, limit: int) -> tuple[list[Incident], int]:
    """Up to `limit` incidents, newest first, and how many there are in all."""
    where = [Incident.status != "resolved"] if open_only else []
    # One read transaction: the count and the page come from the same snapshot.
    reader = engine.execution_options(**READ_ONLY_OPTIONS)
    with Session(reader, expire_on_commit=False) as session, session.begin():
        total = session.scalar(sa.select(sa.func.count()).select_from(Incident).where(*where))
        query = (
            sa.select(Incident)
            .where(*where)
            .order_by(Incident.created_at.desc(), Incident.id.desc())
            .limit(limit)
        )
        return list(session.scalars(query)), int(total or 0)


def incident_line(incident: Incident) -> str:
    """`#N  severity  status  level  public-status  created (UTC)  title`, aligned."""
    columns = [
        f"#{incident.id}",
        f"{_printable(incident.severity):<8}",
        f"{_printable(incident.status):<12}",
        f"L{incident.escalation_level}",
        f"{_printable(incident.public_status or '-'):<13}",
        f"{incident.created_at.astimezone(UTC):%Y-%m-%d %H:%M}Z",
        _printable(incident.title),
    ]
    return "  ".join(columns)


def incident_as_json(incident: Incident) -> dict[str, Any]:
    thread = None
    if incident.slack_channel and incident.slack_root_ts:
        thread = {"channel": incident.slack_channel, "ts": incident.slack_root_ts}
    return {
        "id": incident.id,
        "title": incident.title,
        "severity": incident.severity,
        "status": incident.status,
        "playbook": incident.playbook_id,
        "escalation_level": incident.escalation_level,
        "public_status": incident.public_status,
        "roles": incident.roles or {},
        "created_at": _iso(incident.created_at),
        "acknowledged_at": _iso(incident.acknowledged_at),
        "resolved_at": _iso(incident.resolved_at),
        "slack_thread": thread,
    }


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _printable(text: str) -> str:
    """Outside text on an operator's terminal: no escape sequences, no forged lines."""
    return "".join(c if c.isprintable() else "?" for c in text)
