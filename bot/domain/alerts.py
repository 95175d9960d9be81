"""One `Alert` model for every source, and the parsers that normalise into it.

Pure: no I/O. A parser either returns alerts or raises `PayloadError` whose
message says what is wrong with the payload, so callers can answer 400 (HTTP)
or exit 1 (CLI) with that reason.

Generic JSON (for scripts and `simulate`): one object or a list of objects::

    {"title": "SSOT sync failed", "severity": "critical",
     "labels": {"service": "ssot-sync"}, "annotations": {},
     "key": "optional grouping key", "status": "firing"}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class PayloadError(ValueError):
    """The payload cannot be turned into alerts; the message is the reason."""


class AlertSource(StrEnum):
    PAGERDUTY = "pagerduty"
    ALERTMANAGER = "alertmanager"
    GENERIC = "generic"
    SLACK = "slack"


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class Alert(BaseModel):
    """A normalised alert. Labels are strings, as in Prometheus."""

    model_config = ConfigDict(frozen=True)

    source: AlertSource
    fingerprint: str
    status: AlertStatus = AlertStatus.FIRING
    title: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    # Alertmanager group key, PagerDuty incident id, or the generic `key`.
    group_key: str | None = None
    url: str | None = None
    pagerduty_incident_id: str | None = None
    pagerduty_event_type: str | None = None
    # PagerDuty urgency ("high"/"low"), honoured by severity classification.
    urgency: str | None = None

    def value(self, name: str) -> str | None:
        """A label, or else an annotation, of this name."""
        return self.labels.get(name, self.annotations.get(name))


MAX_LABELS = 256
MAX_TEXT = 8192
# Keys end up in unique indexes (incident key, PagerDuty id, inbox group), and a
# PostgreSQL btree entry holds at most about 2.7 kB: 4-byte characters included,
# these stay well under it.
MAX_GROUP_KEY = 400
MAX_PAGERDUTY_ID = 128


def bounded_key(key: str) -> str:
    """`key`, or when longer than MAX_GROUP_KEY its start and a digest of all of it.

    Deterministic, so every batch of a group still lands on the same incident,
    and distinct long keys stay distinct.
    """
    if len(key) <= MAX_GROUP_KEY:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{key[: MAX_GROUP_KEY - 40]}…#{digest}"


def _strings(raw: Any, what: str) -> dict[str, str]:
    """Labels and annotations: a flat mapping; values become strings, sizes are bounded."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise PayloadError(f"{what} must be an object of strings")
    if len(raw) > MAX_LABELS:
        raise PayloadError(f"{what} has {len(raw)} entries; at most {MAX_LABELS} are accepted")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, dict | list):
            try:
                value = json.dumps(value, sort_keys=True)
            except (TypeError, ValueError, RecursionError):
                raise PayloadError(
                    f"{what}.{str(key)[:64]} is nested too deeply or has non-string keys"
                ) from None
        text = "" if value is None else str(value)
        out[str(key)[:256]] = text[:MAX_TEXT]
    return out


def _time(raw: Any, what: str) -> datetime | None:
    if raw in (None, ""):
        return None
    if not isinstance(raw, str):
        raise PayloadError(f"{what} must be an RFC 3339 time string")
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError(f"{what} is not an RFC 3339 time: {raw[:64]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    # Alertmanager sends 0001-01-01 for "no end yet".
    if parsed.year <= 1:
        return None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00 is past year 9999 in UTC
        raise PayloadError(f"{what} is out of range: {raw[:64]!r}") from None


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _require_object(body: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise PayloadError(f"{what} must be a JSON object")
    return body


# --- Alertmanager webhook v4 -------------------------------------------------


def parse_alertmanager(body: Any) -> list[Alert]:
    """Each alert of an Alertmanager webhook batch, with common labels merged in."""
    body = _require_object(body, "Alertmanager payload")
    if str(body.get("version", "4")) != "4":
        raise PayloadError(f"unsupported Alertmanager webhook version {body.get('version')!r}")
    raw_alerts = body.get("alerts")
    if not isinstance(raw_alerts, list):
        raise PayloadError("Alertmanager payload needs an 'alerts' list")
    group_key = body.get("groupKey")
    if group_key is not None and not isinstance(group_key, str):
        raise PayloadError("groupKey must be a string")
    if group_key is not None:
        group_key = bounded_key(group_key)
    common_labels = _strings(body.get("commonLabels"), "commonLabels")
    common_annotations = _strings(body.get("commonAnnotations"), "commonAnnotations")
    alerts = []
    for index, raw in enumerate(raw_alerts):
        where = f"alerts[{index}]"
        raw = _require_object(raw, where)
        labels = {**common_labels, **_strings(raw.get("labels"), f"{where}.labels")}
        annotations = {
            **common_annotations,
            **_strings(raw.get("annotations"), f"{where}.annotations"),
        }
        status = raw.get("status", "firing")
        if status not in ("firing", "resolved"):
            raise PayloadError(f"{where}.status must be 'firing' or 'resolved', got {status!r}")
        fingerprint = raw.get("fingerprint")
        if not isinstance(fingerprint, str) or not fingerprint:
            fingerprint = _fingerprint(*(f"{k}={v}" for k, v in sorted(labels.items())))
        title = (
            annotations.get("summary")
            or annotations.get("title")
            or labels.get("alertname")
            or "Alertmanager alert"
        )
        alerts.append(
            Alert(
                source=AlertSource.ALERTMANAGER,
                fingerprint=fingerprint[:128],
                status=AlertStatus(status),
                title=title[:512],
                labels=labels,
                annotations=annotations,
                starts_at=_time(raw.get("startsAt"), f"{where}.startsAt"),
                ends_at=_time(raw.get("endsAt"), f"{where}.endsAt"),
                group_key=group_key,
                url=raw.get("generatorURL") if isinstance(raw.get("generatorURL"), str) else None,
            )
        )
    return alerts


# --- PagerDuty webhook v3 ----------------------------------------------------

_PD_RESOLVED = {"incident.resolved"}


def parse_pagerduty(body: Any) -> Alert:
    """A PagerDuty v3 `incident.*` webhook event as one alert (resource_type incident)."""
    body = _require_object(body, "PagerDuty payload")
    event = _require_object(body.get("event"), "PagerDuty payload 'event'")
    event_type = event.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise PayloadError("PagerDuty event needs an 'event_type' string")
    if event.get("resource_type") != "incident":
        raise PayloadError(
            f"PagerDuty event resource_type {event.get('resource_type')!r} is not 'incident'"
        )
    data = _require_object(event.get("data"), "PagerDuty event 'data'")
    # incident.* events carry the incident itself; annotated/responder events nest it.
    incident = data.get("incident") if data.get("type") != "incident" else data
    incident = _require_object(incident or data, "PagerDuty event incident")
    incident_id = incident.get("id")
    if not isinstance(incident_id, str) or not incident_id:
        raise PayloadError("PagerDuty incident needs an 'id'")
    if len(incident_id) > MAX_PAGERDUTY_ID:
        raise PayloadError(
            f"PagerDuty incident id is {len(incident_id)} characters; "
            f"at most {MAX_PAGERDUTY_ID} are accepted"
        )
    service: Mapping[str, Any] = (
        incident["service"] if isinstance(incident.get("service"), Mapping) else {}
    )
    priority: Mapping[str, Any] = (
        incident["priority"] if isinstance(incident.get("priority"), Mapping) else {}
    )
    labels = {
        "service": str(service.get("summary") or ""),
        "pagerduty_service_id": str(service.get("id") or ""),
        "incident_key": str(incident.get("incident_key") or ""),
        "priority": str(priority.get("summary") or ""),
        "urgency": str(incident.get("urgency") or ""),
    }
    labels = {k: v for k, v in labels.items() if v}
    details = incident.get("custom_details") or data.get("custom_details")
    if isinstance(details, Mapping):
        labels = {**_strings(details, "custom_details"), **labels}
    title = incident.get("title") or incident.get("summary") or f"PagerDuty incident {incident_id}"
    status = AlertStatus.RESOLVED if event_type in _PD_RESOLVED else AlertStatus.FIRING
    return Alert(
        source=AlertSource.PAGERDUTY,
        fingerprint=incident_id,
        status=status,
        title=str(title)[:512],
        labels=labels,
        starts_at=_time(incident.get("created_at"), "data.created_at"),
        group_key=incident_id,
        url=incident.get("html_url") if isinstance(incident.get("html_url"), str) else None,
        pagerduty_incident_id=incident_id,
        pagerduty_event_type=event_type,
        urgency=incident.get("urgency") if isinstance(incident.get("urgency"), str) else None,
    )


# --- Generic JSON ------------------------------------------------------------


class GenericAlert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=512)
    severity: str | None = None
    status: AlertStatus = AlertStatus.FIRING
    key: str | None = Field(None, max_length=512)
    labels: dict[str, Any] = Field(default_factory=dict)
    annotations: dict[str, Any] = Field(default_factory=dict)
    starts_at: str | None = None
    url: str | None = None


def parse_generic(body: Any) -> list[Alert]:
    items = body if isinstance(body, list) else [body]
    alerts = []
    for index, raw in enumerate(items):
        where = f"[{index}]" if isinstance(body, list) else "alert"
        try:
            item = GenericAlert.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in first["loc"]) or "body"
            raise PayloadError(f"{where}.{field}: {first['msg']}") from None
        labels = _strings(item.labels, f"{where}.labels")
        if item.severity:
            labels.setdefault("severity", item.severity)
        alerts.append(
            Alert(
                source=AlertSource.GENERIC,
                fingerprint=_fingerprint(
                    item.key or "", item.title, *(f"{k}={v}" for k, v in sorted(labels.items()))
                ),
                status=item.status,
                title=item.title,
                labels=labels,
                annotations=_strings(item.annotations, f"{where}.annotations"),
                starts_at=_time(item.starts_at, f"{where}.starts_at"),
                group_key=item.key,
                url=item.url,
            )
        )
    return alerts


def detect_source(body: Any) -> AlertSource:
    """Guess the payload kind: PagerDuty has `event`, Alertmanager has `alerts`."""
    if isinstance(body, Mapping) and isinstance(body.get("event"), Mapping):
        return AlertSource.PAGERDUTY
    if isinstance(body, Mapping) and "alerts" in body:
        return AlertSource.ALERTMANAGER
    return AlertSource.GENERIC


def parse_alerts(body: Any, source: AlertSource | str | None = None) -> list[Alert]:
    """Parse a decoded JSON body of the given (or detected) source into alerts."""
    kind = AlertSource(source) if source else detect_source(body)
    if kind is AlertSource.PAGERDUTY:
        return [parse_pagerduty(body)]
    if kind is AlertSource.ALERTMANAGER:
        alerts = parse_alertmanager(body)
    elif kind is AlertSource.GENERIC:
        alerts = parse_generic(body)
    else:
        raise PayloadError(f"source {kind.value!r} has no payload format")
    if not alerts:
        raise PayloadError("payload holds no alerts")
    return alerts
