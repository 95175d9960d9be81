"""Severity and alert channels, as the source playbook defines them.

Thresholds (source playbook, "Alert Thresholds"):
  critical — any service down or SSOT sync failure
  warning  — performance degradation > 20 % or error rate > 5 % (strictly above)
  info     — normal operational changes

Channels ("Alert Channels"): critical → PagerDuty + Slack + Email,
warning → Slack + Email, info → Slack only. An alert that came from PagerDuty
is never sent back to PagerDuty.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.domain.alerts import Alert, AlertSource, Severity
from bot.settings import SeverityThresholds

# Words people and tools put in a `severity` label, mapped onto our three levels.
_SEVERITY_WORDS = {
    "critical": Severity.CRITICAL,
    "crit": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "p1": Severity.CRITICAL,
    "high": Severity.CRITICAL,
    "error": Severity.CRITICAL,
    "warning": Severity.WARNING,
    "warn": Severity.WARNING,
    "p2": Severity.WARNING,
    "p3": Severity.WARNING,
    "medium": Severity.WARNING,
    "info": Severity.INFO,
    "informational": Severity.INFO,
    "low": Severity.INFO,
    "p4": Severity.INFO,
    "p5": Severity.INFO,
    "none": Severity.INFO,
}


class Route(StrEnum):
    PAGERDUTY = "pagerduty"
    SLACK = "slack"
    EMAIL = "email"


ROUTES_BY_SEVERITY: dict[Severity, tuple[Route, ...]] = {
    Severity.CRITICAL: (Route.PAGERDUTY, Route.SLACK, Route.EMAIL),
    Severity.WARNING: (Route.SLACK, Route.EMAIL),
    Severity.INFO: (Route.SLACK,),
}


@dataclass(frozen=True)
class Classification:
    severity: Severity
    reason: str


def _percent(alert: Alert, name: str) -> float | None:
    raw = alert.value(name)
    if raw is None:
        return None
    try:
        return float(raw.strip().rstrip("%"))
    except ValueError:
        return None


def classify(alert: Alert, thresholds: SeverityThresholds) -> Classification:
    """Explicit labels win, then PagerDuty urgency, then the playbook thresholds."""
    label = alert.labels.get("severity", "").strip().lower()
    if label in _SEVERITY_WORDS:
        return Classification(_SEVERITY_WORDS[label], f"severity label {label!r}")
    if alert.source is AlertSource.PAGERDUTY and alert.urgency in ("high", "low"):
        severity = Severity.CRITICAL if alert.urgency == "high" else Severity.WARNING
        return Classification(severity, f"PagerDuty urgency {alert.urgency!r}")
    alertname = alert.labels.get("alertname", "")
    if alertname and alertname in thresholds.critical_alertnames:
        return Classification(
            Severity.CRITICAL, f"alertname={alertname} means a service is down or SSOT sync failed"
        )
    error_rate = _percent(alert, "error_rate_percent")
    if error_rate is not None and error_rate > thresholds.error_rate_percent:
        return Classification(
            Severity.WARNING,
            f"error rate {error_rate:g}% > {thresholds.error_rate_percent:g}%",
        )
    degradation = _percent(alert, "performance_degradation_percent")
    if degradation is not None and degradation > thresholds.performance_degradation_percent:
        return Classification(
            Severity.WARNING,
            f"performance degradation {degradation:g}% > "
            f"{thresholds.performance_degradation_percent:g}%",
        )
    return Classification(Severity.INFO, "no threshold crossed: normal operational change")


def routes_for(severity: Severity, source: AlertSource) -> list[Route]:
    """The channels an alert of this severity goes to, minus its own origin."""
    routes = ROUTES_BY_SEVERITY[severity]
    if source is AlertSource.PAGERDUTY:
        return [route for route in routes if route is not Route.PAGERDUTY]
    return list(routes)


def highest(severities: list[Severity]) -> Severity:
    """An incident is as severe as its most severe alert."""
    order = [Severity.CRITICAL, Severity.WARNING, Severity.INFO]
    return min(severities, key=order.index) if severities else Severity.INFO
