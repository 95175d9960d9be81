"""POST /webhooks/pagerduty and POST /webhooks/alertmanager.

Verify, parse, store the body in the inbox (one short transaction), then
answer 202: nothing acknowledged is only in memory, and nothing waits for the
incident work, which the inbox worker does next (bot.ingest.inbox). A database
that cannot be reached is a 503 (both senders retry 5xx); so is an
Alertmanager backlog over INGEST_MAX_BACKLOG batches. A malformed body is a 400
with the reason; an event type we do not handle is still a 202 (PagerDuty
disables webhooks that keep getting 4xx).

The rule: whatever is answered 202 the worker can apply. So the payload is
parsed (bot.domain.alerts) *and* made storable (bot.ingest.http.parse_storable:
lone surrogates and NUL become U+FFFD, numbers JSON cannot carry and deep
nesting are a 400) before the answer, and what is stored is that storable
payload; anything the parser refuses is a 400 then, not a failed row later.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot import metrics
from bot.domain.alerts import PayloadError, parse_alertmanager, parse_pagerduty
from bot.incidents.pagerduty import HANDLED, event_type_of, handle_pagerduty_event
from bot.incidents.service import IncidentService
from bot.ingest.http import RejectedRequest, accepted, parse_storable, read_body
from bot.ingest.inbox import Applier, Inbox, Ingress, Put, SessionApplier
from bot.ingest.signatures import verify_bearer, verify_pagerduty_signature

log = structlog.get_logger("bot.ingest")
T = TypeVar("T")

DATABASE_DOWN = JSONResponse(
    {"error": "database unavailable, retry later"}, status_code=503, headers={"Retry-After": "5"}
)


def _payload(parse: Callable[[Any], T], payload: Any) -> T:
    """`parse(payload)`, its PayloadError a 400 (reason capped and logged like any other)."""
    try:
        return parse(payload)
    except PayloadError as exc:
        raise RejectedRequest(400, str(exc)) from None


def inbox_appliers(service: IncidentService) -> dict[str, Applier]:
    """How the inbox worker applies each source's stored body."""
    return {
        "alertmanager": lambda body, again: service.ingest_alerts(
            parse_alertmanager(json.loads(body)), again
        ),
        "pagerduty": lambda body, again: handle_pagerduty_event(service, json.loads(body), again),
    }


def alertmanager_together(service: IncidentService) -> SessionApplier:
    """Alertmanager batches, applied several to a transaction by the inbox worker."""
    return SessionApplier(
        "alertmanager",
        service.repo.session,
        lambda session, body: service.apply_alerts(session, parse_alertmanager(json.loads(body))),
    )


class PagerDutyWebhook:
    def __init__(
        self, inbox: Inbox, secrets: list[str], wake: Callable[[], None], ingress: Ingress
    ) -> None:
        self.inbox = inbox
        self.secrets = secrets
        self.wake = wake
        self.ingress = ingress

    async def handle(self, request: Request) -> Response:
        with self.ingress.request():
            return await self._handle(request)

    async def _handle(self, request: Request) -> Response:
        if not self.secrets:
            return JSONResponse({"error": "PAGERDUTY_WEBHOOK_SECRETS is not set"}, status_code=503)
        try:
            body = await read_body(request)
            if not verify_pagerduty_signature(
                body, request.headers.get("x-pagerduty-signature"), self.secrets
            ):
                raise RejectedRequest(401, "missing or invalid X-PagerDuty-Signature")
            parsed = parse_storable(body)
            event_type = _payload(event_type_of, parsed.payload)
            if event_type not in HANDLED:
                log.info("pagerduty event ignored", event_type=event_type)
                return accepted(note=f"event type {event_type} is not handled")
            # Malformed is a 400 now, not a failed row later.
            alert = _payload(parse_pagerduty, parsed.payload)
        except RejectedRequest as rejected:
            log.info("pagerduty webhook rejected", status=rejected.status, reason=rejected.reason)
            return rejected.response()
        delivery = request.headers.get("x-webhook-id", "")[:200] or None
        try:
            put = await asyncio.to_thread(
                self.inbox.put,
                "pagerduty",
                parsed.text,
                1,
                alert.pagerduty_incident_id or "",
                delivery,
            )
        except sa.exc.SQLAlchemyError as exc:
            log.error("pagerduty webhook not stored", error=str(exc).splitlines()[0])
            return DATABASE_DOWN
        if put is Put.DUPLICATE:
            return accepted(duplicate=True)
        self.wake()
        return accepted(event_type=event_type)


class AlertmanagerWebhook:
    """Bulk alerts: stored by their own small pool, with a bounded backlog.

    The pool keeps a burst of batches from taking the default pool's threads
    from PagerDuty webhooks and Slack requests. When `max_backlog` batches are
    already waiting in the inbox, the next is refused with 503 and Retry-After:
    Alertmanager retries 5xx, so nothing is lost, and nothing is ever answered
    202 before it is durable.
    """

    def __init__(
        self,
        inbox: Inbox,
        token: str | None,
        wake: Callable[[], None],
        ingress: Ingress,
        workers: int = 2,
        max_backlog: int = 256,
    ) -> None:
        self.inbox = inbox
        self.token = token
        self.wake = wake
        self.ingress = ingress
        self.lane = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")
        self.max_backlog = max_backlog

    async def handle(self, request: Request) -> Response:
        with self.ingress.request():
            return await self._handle(request)

    async def _handle(self, request: Request) -> Response:
        if not self.token:
            return JSONResponse({"error": "ALERTMANAGER_TOKEN is not set"}, status_code=503)
        try:
            if not verify_bearer(request.headers.get("authorization"), self.token):
                raise RejectedRequest(401, "missing or invalid bearer token")
            body = await read_body(request)
            parsed = parse_storable(body)
            alerts = _payload(parse_alertmanager, parsed.payload)
        except RejectedRequest as rejected:
            log.info(
                "alertmanager webhook rejected", status=rejected.status, reason=rejected.reason
            )
            response = rejected.response()
            if rejected.status == 401:
                response.headers["WWW-Authenticate"] = "Bearer"
            return response
        if not alerts:
            return accepted(alerts=0)
        try:
            loop = asyncio.get_running_loop()
            put = await loop.run_in_executor(
                self.lane,
                lambda: self.inbox.put(
                    "alertmanager",
                    parsed.text,
                    len(alerts),
                    alerts[0].group_key or "",
                    max_backlog=self.max_backlog,
                ),
            )
        except sa.exc.SQLAlchemyError as exc:
            log.error("alertmanager batch not stored", error=str(exc).splitlines()[0])
            return DATABASE_DOWN
        if put is Put.FULL:
            metrics.INGEST_REFUSED.inc()
            return JSONResponse(
                {"error": f"ingest backlog full ({self.max_backlog} batches); retry shortly"},
                status_code=503,
                headers={"Retry-After": "2"},
            )
        self.wake()
        metrics.ALERTS_INGESTED.inc(len(alerts))
        return accepted(alerts=len(alerts))
