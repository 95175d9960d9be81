"""One incident's facts for its post-incident review, read once into plain values.

The draft (bot/reviews/draft.py) is pure: everything it says comes from the
`ReviewFacts` read here in one transaction, so the same incident always drafts
the same text whether `nexus-bot review` prints it or a publisher files it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.domain.playbooks import LoadedPlaybooks
from bot.store.models import ALERT_STATUSES, Alert, Incident
from bot.timeline.events import Event, Kind
from bot.timeline.recorder import read_timeline

# A storm incident holds thousands of alerts but a handful of rules; past this
# many names the review says "and more" instead of listing a label explosion.
MAX_LABEL_VALUES = 50


@dataclass(frozen=True)
class IncidentFacts:
    id: int
    title: str
    severity: str
    status: str
    playbook_id: str
    # The incident's own `service` label first, then the other alerts' services.
    services: tuple[str, ...]
    # Role → Slack user/group IDs, as the communication plan holds them.
    roles: Mapping[str, tuple[str, ...]]
    created_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    slack_channel: str | None
    slack_root_ts: str | None


@dataclass(frozen=True)
class AlertFacts:
    firing: int
    resolved: int
    # Distinct `alertname` labels of the incident's alerts (every one fired once).
    alertnames: tuple[str, ...]
    more_alertnames: bool = False


@dataclass(frozen=True)
class ReviewFacts:
    incident: IncidentFacts
    events: tuple[Event, ...]  # the timeline, oldest first
    alerts: AlertFacts
    playbook_title: str | None
    # The playbook file that matched, as a repository path (`playbooks/x.yaml`);
    # None for generic triage or a playbook no longer loaded.
    playbook_path: str | None


def load_review_facts(
    session: Session, incident_id: int, playbooks: LoadedPlaybooks
) -> ReviewFacts | None:
    """The incident's facts, or None when there is no such incident."""
    incident = session.get(Incident, incident_id)
    if incident is None:
        return None
    events = tuple(read_timeline(session, incident_id))
    services, _ = _distinct_label(session, incident_id, "service")
    own_service = (incident.labels or {}).get("service")
    if isinstance(own_service, str) and own_service:
        services = (own_service, *(s for s in services if s != own_service))
    alertnames, more = _distinct_label(session, incident_id, "alertname")
    firing, resolved = _alert_counts(session, incident_id)
    playbook = playbooks.get(incident.playbook_id)
    return ReviewFacts(
        incident=IncidentFacts(
            id=incident.id,
            title=incident.title,
            severity=incident.severity,
            status=incident.status,
            playbook_id=incident.playbook_id,
            services=services[:MAX_LABEL_VALUES],
            roles=_roles(incident.roles),
            created_at=incident.created_at,
            acknowledged_at=incident.acknowledged_at,
            resolved_at=incident.resolved_at,
            slack_channel=incident.slack_channel,
            slack_root_ts=incident.slack_root_ts,
        ),
        events=events,
        alerts=AlertFacts(firing, resolved, alertnames, more),
        playbook_title=playbook.title if playbook else _opened_playbook_title(events),
        playbook_path=repository_path(playbooks.sources.get(incident.playbook_id)),
    )


def repository_path(path: Path | None, root: Path | None = None) -> str | None:
    """A playbook file as the repository names it: `playbooks/x.yaml`, never a host path.

    `serve` resolves paths against its start directory (absolute); the one-shot
    commands keep them as configured (relative). Either way the review shows the
    path inside the checkout, or the folder and file name when it lies outside.
    """
    if path is None:
        return None
    if not path.is_absolute():
        return path.as_posix().removeprefix("./")
    try:
        return path.relative_to((root or Path.cwd()).resolve()).as_posix()
    except ValueError:
        return Path(path.parent.name, path.name).as_posix()


def _roles(stored: Mapping[str, Any] | None) -> dict[str, tuple[str, ...]]:
    roles: dict[str, tuple[str, ...]] = {}
    for role, holders in (stored or {}).items():
        if isinstance(holders, list):
            roles[str(role)] = tuple(str(h) for h in holders)
    return roles


def _alert_counts(session: Session, incident_id: int) -> tuple[int, int]:
    counts = dict.fromkeys(ALERT_STATUSES, 0)
    query = (
        sa.select(Alert.status, sa.func.count())
        .where(Alert.incident_id == incident_id)
        .group_by(Alert.status)
    )
    for status, count in session.execute(query):
        counts[status] = int(count)
    return counts["firing"], counts["resolved"]


def _distinct_label(session: Session, incident_id: int, name: str) -> tuple[tuple[str, ...], bool]:
    """Distinct values of one label over the incident's alerts (sorted), and whether cut."""
    value = Alert.labels[name].as_string()
    query = (
        sa.select(value)
        .where(Alert.incident_id == incident_id, value.is_not(None), value != "")
        .distinct()
        .order_by(value)
        .limit(MAX_LABEL_VALUES + 1)
    )
    values = tuple(str(v) for v in session.scalars(query))
    return values[:MAX_LABEL_VALUES], len(values) > MAX_LABEL_VALUES


def _opened_playbook_title(events: tuple[Event, ...]) -> str | None:
    """The title the playbook had when the incident opened (it may be gone since)."""
    for event in events:
        if event.kind == Kind.OPENED:
            title = event.fact("playbook_title")
            return str(title) if title else None
    return None
