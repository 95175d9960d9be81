"""Build the status snapshot from the database, store it, and read it back.

What is public is decided here and only here: an incident appears once it has
a public `update.posted` event; it shows the configured public name, its
public updates, its times, and the components its `service` label maps to.
Titles, labels, people, notes and remediations never leave the database
through this module, and a recovery drill's incident never appears at all.

`refresh` runs in the transaction of each public change (the status page is
a timeline output) and from a periodic job (resolved incidents age out of the
history); it writes the one `status_snapshot` row only when the page changed.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.settings import Settings
from bot.store.models import Incident, StatusComponentOverride, TimelineEvent, utcnow
from bot.store.models import StatusSnapshot as SnapshotRow
from bot.timeline.events import Event, Kind
from bot.web.model import (
    IMPACT_FOR_SEVERITY,
    INDICATORS,
    PublicIncident,
    PublicUpdate,
    StatusSnapshot,
    component_states,
    overall,
)

SNAPSHOT_ID = 1
# Events that can change what the page shows.
PUBLIC_CHANGES = frozenset({Kind.UPDATE_POSTED, Kind.RESOLVED, Kind.REOPENED})


def build(session: Session, settings: Settings, now: datetime | None = None) -> StatusSnapshot:
    config = settings.status_page
    now = now or utcnow()
    since = now - timedelta(days=config.history_days)
    rows = session.execute(
        sa.select(TimelineEvent, Incident)
        .join(Incident, Incident.id == TimelineEvent.incident_id)
        .where(
            TimelineEvent.kind == Kind.UPDATE_POSTED.value,
            TimelineEvent.public.is_(True),
            # A drill is never public: not listed, no updates, no component effect.
            Incident.drill_run_id.is_(None),
            sa.or_(Incident.status != "resolved", Incident.resolved_at >= since),
        )
        .order_by(TimelineEvent.id)
        # The caller's transaction may have just changed an incident (resolved it).
        .execution_options(populate_existing=True)
    ).all()
    updates: dict[int, list[PublicUpdate]] = defaultdict(list)
    incidents: dict[int, Incident] = {}
    for event, incident in rows:
        incidents[incident.id] = incident
        facts = event.facts or {}
        updates[incident.id].append(
            PublicUpdate(
                id=event.id,
                status=str(facts.get("status", "investigating")),
                body=str(facts.get("text", "")),
                created_at=event.at,
            )
        )
    published = [
        _public_incident(incident, updates[number], settings)
        for number, incident in incidents.items()
    ]
    active = sorted((i for i in published if i.active), key=lambda i: i.created_at, reverse=True)
    resolved = sorted(
        (i for i in published if not i.active),
        key=lambda i: i.resolved_at or i.updated_at,
        reverse=True,
    )
    overrides = {
        row.component_id: row.state for row in session.scalars(sa.select(StatusComponentOverride))
    }
    components = component_states(
        config.components,
        [(incidents[i.id].severity, i.components) for i in active],
        overrides,
    )
    indicator = overall(components, [i.impact for i in active])
    return StatusSnapshot(
        page_name=config.name,
        page_url=config.url,
        updated_at=now,
        indicator=indicator,
        description=INDICATORS[indicator],
        components=tuple(components),
        active=tuple(active),
        resolved=tuple(resolved),
        history_days=config.history_days,
        refresh_seconds=config.refresh_seconds,
    )


def _public_incident(
    incident: Incident, updates: list[PublicUpdate], settings: Settings
) -> PublicIncident:
    newest_first = tuple(sorted(updates, key=lambda u: u.id, reverse=True))
    resolved_at = incident.resolved_at if incident.status == "resolved" else None
    component = settings.status_page.component_for(str((incident.labels or {}).get("service", "")))
    last = newest_first[0]
    return PublicIncident(
        id=incident.id,
        name=settings.status_page.incident_name,
        # Resolved without a public "resolved" update (its alerts cleared): say resolved.
        status="resolved" if resolved_at is not None else last.status,
        impact=IMPACT_FOR_SEVERITY.get(incident.severity, "none"),
        created_at=newest_first[-1].created_at,
        updated_at=max(last.created_at, resolved_at or last.created_at),
        resolved_at=resolved_at,
        components=(component.id,) if component is not None else (),
        updates=newest_first,
    )


def fingerprint(snapshot: StatusSnapshot) -> str:
    """What the page shows, hashed: the ETag (the build time itself is left out)."""
    document = snapshot.to_dict()
    document.pop("updated_at", None)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def refresh(session: Session, settings: Settings, now: datetime | None = None) -> bool:
    """Rebuild and store the snapshot in the caller's transaction; True if the page changed."""
    snapshot = build(session, settings, now)
    etag = fingerprint(snapshot)
    current = session.get(SnapshotRow, SNAPSHOT_ID, with_for_update=True)
    if current is not None and current.etag == etag:
        return False
    values: dict[str, Any] = {
        "document": snapshot.to_dict(),
        "etag": etag,
        "updated_at": snapshot.updated_at,
    }
    if current is None:
        session.add(SnapshotRow(id=SNAPSHOT_ID, **values))
        session.flush()
    else:
        session.execute(
            sa.update(SnapshotRow)
            .where(SnapshotRow.id == SNAPSHOT_ID)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    return True


def read(session: Session) -> tuple[StatusSnapshot, str] | None:
    row = session.get(SnapshotRow, SNAPSHOT_ID)
    if row is None:
        return None
    return StatusSnapshot.from_dict(row.document), row.etag


class StatusPageOutput:
    """The status page as a timeline output: a public change rebuilds the snapshot."""

    name = "status_page"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def on_event(self, session: Session, event: Event) -> None:
        if event.kind in PUBLIC_CHANGES:
            refresh(session, self.settings, event.at)
