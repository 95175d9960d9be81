"""Which playbooks were used in incidents since their last review (for `validate`).

Every post-incident review lists "procedures to update" for the playbook that
matched; until that playbook's `review.last_reviewed` moves past the incident,
`nexus-bot validate` flags it. The incidents are read from `DATABASE_URL` when
it can be read without side effects: an existing SQLite file or a reachable
server, at the current schema. `validate` never creates or migrates a database;
without one it says nothing about incidents.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bot.store.db import make_engine

# Incidents whose resolve drafted a review (bot.reviews): warning and critical.
_REVIEWED_SEVERITIES = ("critical", "warning")


@dataclass(frozen=True)
class LastUse:
    incident_id: int
    resolved_on: date


def last_reviewed_use(database_url: str) -> dict[str, LastUse] | None:
    """Per playbook, its newest resolved warning/critical incident (drills aside);
    None if unreadable."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and (
        not url.database or not Path(url.database).is_file()
    ):
        return None  # no database yet: nothing to say, and nothing created
    try:
        engine = make_engine(database_url)
    except Exception:  # a URL the bot could not use either: `serve` says why
        return None
    try:
        with engine.connect() as conn:
            incidents = sa.table(
                "incidents",
                sa.column("id", sa.Integer()),
                sa.column("playbook_id", sa.Text()),
                sa.column("severity", sa.Text()),
                sa.column("status", sa.Text()),
                sa.column("resolved_at", sa.DateTime(timezone=True)),
                sa.column("drill_run_id", sa.Integer()),
            )
            rows = conn.execute(
                sa.select(incidents.c.id, incidents.c.playbook_id, incidents.c.resolved_at)
                .where(
                    incidents.c.status == "resolved",
                    incidents.c.severity.in_(_REVIEWED_SEVERITIES),
                    incidents.c.resolved_at.is_not(None),
                    # A drill rehearses the playbook; it is no use that calls for a review.
                    incidents.c.drill_run_id.is_(None),
                )
                .order_by(incidents.c.resolved_at)
            ).all()
    except sa.exc.SQLAlchemyError:
        return None  # unreachable, or a schema from before incidents: say nothing
    finally:
        engine.dispose()
    uses: dict[str, LastUse] = {}
    for incident_id, playbook_id, resolved_at in rows:
        resolved_on = resolved_at.date() if hasattr(resolved_at, "date") else resolved_at
        uses[str(playbook_id)] = LastUse(int(incident_id), resolved_on)
    return uses
