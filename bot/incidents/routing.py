"""Alert routes beyond Slack: PagerDuty Events API v2 for critical incidents.

Per the source playbook's alert channels, a critical incident pages through
PagerDuty (with Slack and email); warning and info do not. The dedup key is
the incident key, so a storm of alerts is one PagerDuty incident, and it is
resolved when our incident resolves. Incidents that came from PagerDuty are
never sent back to it. Email is sent per incident and escalation level by the
escalation ladder, never per alert.

Calls run in a small background pool after the state change committed: a slow
PagerDuty must not slow the webhook answers. A failure is logged and audited.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import structlog

from bot.domain.alerts import AlertSource, Severity
from bot.domain.routing import Route, routes_for
from bot.store.models import Incident
from bot.store.repository import Repository

log = structlog.get_logger("bot.routing")


class PagerDutyEventsClient(Protocol):
    def trigger(
        self,
        dedup_key: str,
        summary: str,
        source: str,
        severity: str = "critical",
        custom_details: dict[str, object] | None = None,
    ) -> object: ...

    def resolve(self, dedup_key: str) -> object: ...


class Background:
    """A few threads for outbound notices; `wait()` lets tests and shutdown drain it."""

    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notify")

    def submit(self, task: Callable[[], None]) -> None:
        self._pool.submit(task)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


class NoticeRouter:
    def __init__(
        self,
        repo: Repository,
        events: PagerDutyEventsClient | None,
        background: Background,
    ) -> None:
        self.repo = repo
        self.events = events
        self.background = background

    def _pages(self, incident: Incident) -> bool:
        routes = routes_for(Severity(incident.severity), AlertSource(incident.source))
        return self.events is not None and Route.PAGERDUTY in routes

    def opened(self, incident: Incident) -> None:
        if not self._pages(incident):
            return
        events = self.events
        assert events is not None
        labels = incident.labels or {}
        details: dict[str, object] = {
            "incident": incident.id,
            "playbook": incident.playbook_id,
            **{k: labels[k] for k in ("service", "alertname", "scenario") if k in labels},
        }

        def trigger() -> None:
            events.trigger(
                dedup_key=incident.key[:255],
                summary=f"#{incident.id} {incident.title}"[:1024],
                source=str(labels.get("service") or "nexus-bot"),
                severity="critical",
                custom_details=details,
            )

        self.background.submit(lambda: self._attempt(incident.id, "pagerduty.trigger", trigger))

    def resolved(self, incident: Incident) -> None:
        if not self._pages(incident):
            return
        events = self.events
        assert events is not None
        key = incident.key[:255]
        self.background.submit(
            lambda: self._attempt(incident.id, "pagerduty.resolve", lambda: events.resolve(key))
        )

    def _attempt(self, number: int, what: str, call: Callable[[], object]) -> None:
        try:
            call()
        except Exception as exc:  # a notice failure must not disturb the incident
            log.warning("notice failed", incident=number, notice=what, error=str(exc)[:300])
            self.repo.audit("nexus-bot", f"{what}_failed", number, {"error": str(exc)[:300]})
        else:
            self.repo.audit("nexus-bot", f"{what}_sent", number, {})
