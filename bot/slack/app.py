"""The Slack app: Bolt `AsyncApp`, served over HTTP at /slack/events or Socket Mode.

Over HTTP we check what Bolt would only answer vaguely, before Bolt sees the
request: size (413), signature and timestamp (401, with the reason), and the
body's shape (400). Events API retries of an event we already handled are
answered 200 and dropped: Bolt does not deduplicate.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import structlog
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.incidents.service import IncidentService
from bot.ingest.http import RejectedRequest, read_body
from bot.remediation.flow import RemediationFlow
from bot.settings import Settings
from bot.slack.listeners import register_listeners
from bot.store.repository import Repository

log = structlog.get_logger("bot.slack")


def build_slack_app(
    settings: Settings,
    client: AsyncWebClient,
    service: IncidentService,
    flow: RemediationFlow,
) -> AsyncApp:
    signing_secret = settings.slack_signing_secret
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret.get_secret_value() if signing_secret else None,
        # Socket Mode has no signature to check.
        request_verification_enabled=signing_secret is not None,
        process_before_response=False,
        logger=logging.getLogger("slack_bolt"),
    )
    app.middleware(_drop_repeated_events(service.repo))
    register_listeners(app, service, flow)
    return app


def _drop_repeated_events(repo: Repository) -> Callable[..., Awaitable[BoltResponse | None]]:
    """Slack redelivers an Events API event it thinks we missed (over HTTP and Socket
    Mode alike); Bolt does not deduplicate, so the event id is remembered here."""

    async def middleware(
        body: dict[str, Any], next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if isinstance(event_id, str) and event_id:
            first = await asyncio.to_thread(repo.remember_delivery, "slack-event", event_id[:200])
            if not first:
                return BoltResponse(status=200, body="")
        await next()
        return None

    return middleware


class SlackEventsEndpoint:
    """POST /slack/events: verify, validate, dedupe, then hand to Bolt."""

    def __init__(self, app: AsyncApp, signing_secret: str, repo: Repository) -> None:
        self.app = app
        self.verifier = SignatureVerifier(signing_secret)
        self.repo = repo

    async def handle(self, request: Request) -> Response:
        try:
            body = await read_body(request)
            self._verify(body, request)
            _check_shape(body, request.headers.get("content-type", ""))
        except RejectedRequest as rejected:
            log.info("slack request rejected", status=rejected.status, reason=rejected.reason)
            return rejected.response()
        bolt_response = await self.app.async_dispatch(
            AsyncBoltRequest(
                body=body.decode("utf-8"),
                query=request.url.query,
                headers={k: [v] for k, v in request.headers.items()},
            )
        )
        return Response(
            content=bolt_response.body,
            status_code=bolt_response.status,
            headers={k: v[0] for k, v in bolt_response.headers.items() if v},
        )

    def _verify(self, body: bytes, request: Request) -> None:
        timestamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature", "")
        if not timestamp or not signature:
            raise RejectedRequest(401, "missing Slack signature headers")
        if not timestamp.isdigit():
            raise RejectedRequest(401, "X-Slack-Request-Timestamp is not a number")
        if not self.verifier.is_valid(body, timestamp, signature):
            stale = abs(self.verifier.clock.now() - int(timestamp)) > 60 * 5
            raise RejectedRequest(401, "stale request timestamp" if stale else "invalid signature")


def _check_shape(body: bytes, content_type: str) -> None:
    """400 for a body Bolt could not use."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RejectedRequest(400, "body is not UTF-8") from None
    if content_type.startswith("application/json"):
        _json_object(text, "body")
        return
    if not content_type.startswith("application/x-www-form-urlencoded"):
        raise RejectedRequest(400, f"unsupported content type {content_type[:80]!r}")
    form = parse_qs(text, keep_blank_values=True)
    if "payload" in form:
        payload = _json_object(form["payload"][0], "payload field")
        if not isinstance(payload.get("type"), str):
            raise RejectedRequest(400, "payload has no interaction type")
        return
    if "command" not in form:
        raise RejectedRequest(400, "form has neither a slash command nor an interaction payload")


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise RejectedRequest(400, f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise RejectedRequest(400, f"{what} must be a JSON object")
    return value


async def not_configured(_: Request) -> Response:
    return JSONResponse(
        {
            "error": "Slack over HTTP is not configured: set SLACK_BOT_TOKEN and "
            "SLACK_SIGNING_SECRET (with SLACK_APP_TOKEN, Slack talks to the bot over Socket Mode)"
        },
        503,
    )
