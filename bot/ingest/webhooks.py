"""POST /webhooks/pagerduty and POST /webhooks/alertmanager.

Verify, parse, store, then answer 202: nothing acknowledged is only in
memory. A database that cannot be reached is a 503 (both senders retry 5xx);
a malformed body is a 400 with the reason; an event type we do not handle is
still a 202 (PagerDuty disables webhooks that keep getting 4xx).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot import metrics
from bot.domain.alerts import PayloadError, parse_alertmanager
from bot.incidents.pagerduty import handle_pagerduty_event
from bot.incidents.service import IncidentService
from bot.ingest.http import RejectedRequest, accepted, parse_json, read_body
from bot.ingest.signatures import verify_bearer, verify_pagerduty_signature

log = structlog.get_logger("bot.ingest")

DATABASE_DOWN = JSONResponse(
    {"error": "database unavailable, retry later"}, status_code=503, headers={"Retry-After": "5"}
)


class PagerDutyWebhook:
    def __init__(self, service: IncidentService, secrets: list[str]) -> None:
        self.service = service
        self.secrets = secrets

    async def handle(self, request: Request) -> Response:
        if not self.secrets:
            return JSONResponse({"error": "PAGERDUTY_WEBHOOK_SECRETS is not set"}, status_code=503)
        try:
            body = await read_body(request)
            if not verify_pagerduty_signature(
                body, request.headers.get("x-pagerduty-signature"), self.secrets
            ):
                raise RejectedRequest(401, "missing or invalid X-PagerDuty-Signature")
            payload = parse_json(body)
        except RejectedRequest as rejected:
            log.info("pagerduty webhook rejected", status=rejected.status, reason=rejected.reason)
            return rejected.response()
        delivery = request.headers.get("x-webhook-id", "")[:200]
        try:
            return await asyncio.to_thread(self._handle, payload, delivery)
        except PayloadError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except sa.exc.SQLAlchemyError as exc:
            log.error("pagerduty webhook not stored", error=str(exc).splitlines()[0])
            return DATABASE_DOWN

    def _handle(self, payload: Any, delivery: str) -> Response:
        repo = self.service.repo
        if delivery and repo.delivery_seen("pagerduty", delivery):
            return accepted(duplicate=True)
        outcome = handle_pagerduty_event(self.service, payload)
        if delivery:
            # Remembered only once handled: a failure above leaves the redelivery welcome.
            repo.remember_delivery("pagerduty", delivery)
        return accepted(incidents=outcome.incidents, note=outcome.message or None)


class AlertmanagerWebhook:
    """Bulk alerts: stored in their own lane with a bounded backlog.

    Batches run on a dedicated thread pool (PagerDuty webhooks and Slack
    requests use the default one, so a storm does not queue in front of them).
    When `max_backlog` batches are already waiting or being stored, the next
    is refused with 503 and Retry-After: Alertmanager retries 5xx, so nothing
    is lost, and nothing is ever answered 202 before it is durable.
    """

    def __init__(
        self,
        service: IncidentService,
        token: str | None,
        workers: int = 2,
        max_backlog: int = 64,
    ) -> None:
        self.service = service
        self.token = token
        self.lane = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")
        self.max_backlog = max_backlog
        self.backlog = 0  # touched only on the event loop

    async def handle(self, request: Request) -> Response:
        if not self.token:
            return JSONResponse({"error": "ALERTMANAGER_TOKEN is not set"}, status_code=503)
        try:
            if not verify_bearer(request.headers.get("authorization"), self.token):
                raise RejectedRequest(401, "missing or invalid bearer token")
            body = await read_body(request)
            alerts = parse_alertmanager(parse_json(body))
        except RejectedRequest as rejected:
            log.info(
                "alertmanager webhook rejected", status=rejected.status, reason=rejected.reason
            )
            response = rejected.response()
            if rejected.status == 401:
                response.headers["WWW-Authenticate"] = "Bearer"
            return response
        except PayloadError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if not alerts:
            return accepted(incidents=[], alerts=0)
        if self.backlog >= self.max_backlog:
            metrics.INGEST_REFUSED.inc()
            return JSONResponse(
                {"error": f"ingest backlog full ({self.backlog} batches); retry shortly"},
                status_code=503,
                headers={"Retry-After": "2"},
            )
        self.backlog += 1
        try:
            loop = asyncio.get_running_loop()
            outcome = await loop.run_in_executor(self.lane, self.service.ingest_alerts, alerts)
        except sa.exc.SQLAlchemyError as exc:
            log.error("alertmanager batch not stored", error=str(exc).splitlines()[0])
            return DATABASE_DOWN
        finally:
            self.backlog -= 1
        metrics.ALERTS_INGESTED.inc(len(alerts))
        return accepted(incidents=outcome.incidents, alerts=len(alerts), new=outcome.new_alerts)
