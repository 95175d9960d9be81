"""The status page's data, and how component states and the banner are derived (pure).

Only published facts go in here: the public incident name from config (never
an alert's title), its public updates, its times, and the components its
alert `service` maps to. A `StatusSnapshot` is what every endpoint renders
(HTML, JSON, Atom); it is rebuilt when something public changes and stored,
so a request never queries incidents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from bot.web.config import ComponentConfig

# Worst last: a component shows the worst state any of its incidents gives it.
COMPONENT_STATES = ("operational", "degraded_performance", "partial_outage", "major_outage")
COMPONENT_LABELS = {
    "operational": "Operational",
    "degraded_performance": "Degraded performance",
    "partial_outage": "Partial outage",
    "major_outage": "Major outage",
}
PUBLIC_STATUSES = ("investigating", "identified", "monitoring", "resolved")
# The overall indicator as status-page users script against it, and the banner's words.
INDICATORS = {
    "none": "All systems operational",
    "minor": "Degraded performance",
    "major": "Partial outage",
    "critical": "Major outage",
}
_INDICATOR_FOR_STATE = {
    "operational": "none",
    "degraded_performance": "minor",
    "partial_outage": "major",
    "major_outage": "critical",
}
# Incident impact (Statuspage's vocabulary) by our severity.
IMPACT_FOR_SEVERITY = {"critical": "critical", "warning": "minor", "info": "none"}


@dataclass(frozen=True)
class PublicUpdate:
    id: int  # the timeline event's id: stable, so feed entries keep their identity
    status: str
    body: str
    created_at: datetime


@dataclass(frozen=True)
class PublicIncident:
    id: int
    name: str
    status: str  # the newest public update's status
    impact: str  # none | minor | major | critical
    created_at: datetime  # when it was first published
    updated_at: datetime
    resolved_at: datetime | None
    components: tuple[str, ...]  # component ids
    updates: tuple[PublicUpdate, ...]  # newest first

    @property
    def active(self) -> bool:
        return self.resolved_at is None


@dataclass(frozen=True)
class ComponentView:
    id: str
    name: str
    description: str
    status: str  # one of COMPONENT_STATES
    overridden: bool = False  # set by hand (`/incident component`), not derived


@dataclass(frozen=True)
class StatusSnapshot:
    page_name: str
    page_url: str | None
    updated_at: datetime
    indicator: str  # none | minor | major | critical
    description: str
    components: tuple[ComponentView, ...]
    active: tuple[PublicIncident, ...]  # newest first
    resolved: tuple[PublicIncident, ...]  # of the last history_days, newest first
    history_days: int = 14
    refresh_seconds: int = 60

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for storage (datetimes as ISO 8601)."""
        document: dict[str, Any] = _jsonable(asdict(self))
        return document

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StatusSnapshot:
        def incident(raw: Mapping[str, Any]) -> PublicIncident:
            return PublicIncident(
                id=int(raw["id"]),
                name=str(raw["name"]),
                status=str(raw["status"]),
                impact=str(raw["impact"]),
                created_at=_time(raw["created_at"]),
                updated_at=_time(raw["updated_at"]),
                resolved_at=_time(raw["resolved_at"]) if raw.get("resolved_at") else None,
                components=tuple(raw.get("components") or ()),
                updates=tuple(
                    PublicUpdate(
                        int(u["id"]), str(u["status"]), str(u["body"]), _time(u["created_at"])
                    )
                    for u in raw.get("updates") or ()
                ),
            )

        return cls(
            page_name=str(data["page_name"]),
            page_url=data.get("page_url"),
            updated_at=_time(data["updated_at"]),
            indicator=str(data["indicator"]),
            description=str(data["description"]),
            components=tuple(ComponentView(**c) for c in data.get("components") or ()),
            active=tuple(incident(i) for i in data.get("active") or ()),
            resolved=tuple(incident(i) for i in data.get("resolved") or ()),
            history_days=int(data.get("history_days", 14)),
            refresh_seconds=int(data.get("refresh_seconds", 60)),
        )


def incident_state(severity: str, component: ComponentConfig) -> str:
    """What one open incident does to its component."""
    if severity == "critical":
        return "major_outage"
    if severity == "warning":
        return component.warning_state
    return "operational"


def component_states(
    components: Iterable[ComponentConfig],
    open_incidents: Iterable[tuple[str, Iterable[str]]],
    overrides: Mapping[str, str],
) -> list[ComponentView]:
    """Each component's state: a manual override, else the worst of its open published
    incidents (given as (severity, component ids)), else operational."""
    listed = list(components)
    worst = {c.id: "operational" for c in listed}
    by_id = {c.id: c for c in listed}
    for severity, ids in open_incidents:
        for component_id in ids:
            component = by_id.get(component_id)
            if component is None:
                continue
            state = incident_state(severity, component)
            if COMPONENT_STATES.index(state) > COMPONENT_STATES.index(worst[component.id]):
                worst[component.id] = state
    views = []
    for component in listed:
        override = overrides.get(component.id)
        views.append(
            ComponentView(
                id=component.id,
                name=component.name,
                description=component.description,
                status=override if override in COMPONENT_STATES else worst[component.id],
                overridden=override in COMPONENT_STATES,
            )
        )
    return views


def overall(components: Iterable[ComponentView], active_impacts: Iterable[str] = ()) -> str:
    """The banner's indicator: the worst component state; an active incident on no
    component still says at least "minor" (something is going on)."""
    indicator = "none"
    order = list(INDICATORS)
    for component in components:
        candidate = _INDICATOR_FOR_STATE[component.status]
        if order.index(candidate) > order.index(indicator):
            indicator = candidate
    if indicator == "none" and any(impact != "none" for impact in active_impacts):
        indicator = "minor"
    return indicator


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
