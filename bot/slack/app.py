"""The Slack app: Bolt `AsyncApp`, served over HTTP at /slack/events or Socket Mode.

Over HTTP we check what Bolt would only answer vaguely, before Bolt sees the
request: size (413), signature and timestamp (401, with the reason; checked on
the raw bytes, before anything is decoded), and the body's shape (400). A
signed request is accepted once: the same timestamp and signature again (a
replay, within the 5 minutes the signature is valid) is answered 200 and
dropped, across replicas, by remembering them in the database. Events API
retries of an event we already handled are answered 200 and dropped too: Bolt
does not deduplicate. While the database is unreachable, users get an
ephemeral "try again" instead of a 500 (see bot.slack.outage).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import structlog
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.drills.service import DrillService
from bot.incidents.service import IncidentService
from bot.ingest.http import RejectedRequest, read_body
from bot.remediation.flow import RemediationFlow
from bot.reviews.service import ReviewService
from bot.settings import Settings
from bot.slack.listeners import register_listeners
from bot.slack.outage import DatabaseUnreachable, DatabaseWatch, error_handler
from bot.store.db import database_reachable
from bot.store.models import utcnow
from bot.store.repository import Repository
from bot.web.components import StatusComponents

log = structlog.get_logger("bot.slack")

# Slack's signing scheme: a request is valid for 5 minutes either side of its timestamp.
SIGNATURE_WINDOW_SECONDS = 60 * 5
# A (timestamp, signature) pair is remembered this long after it arrived: its own
# window closes at most 10 minutes later, plus a margin for replicas' clocks.
REPLAY_MEMORY = timedelta(minutes=15)
# The replay check runs before Bolt acknowledges; Slack gives up after 3 s.
REPLAY_CHECK_SECONDS = 2.0
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


def build_slack_app(
    settings: Settings,
    client: AsyncWebClient,
    service: IncidentService,
    flow: RemediationFlow,
    components: StatusComponents,
    reviews: ReviewService,
    drills: DrillService | None = None,
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
    watch = DatabaseWatch()
    app.error(error_handler(watch))
    app.middleware(_drop_replays(Replays(service.repo), watch))
    app.middleware(_drop_repeated_events(service.repo, watch))
    register_listeners(app, service, flow, components, reviews, watch, drills)
    return app


class Replays:
    """Signed requests already accepted, by (timestamp, signature), in the database so
    that every replica knows them; rows older than REPLAY_MEMORY are pruned here."""

    SOURCE = "slack-request"
    PRUNE_EVERY_SECONDS = 60.0

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self._pruned_at: float | None = None

    def first(self, timestamp: str, signature: str) -> bool:
        """True the first time; runs in a worker thread (database calls block)."""
        now = utcnow()
        first = self.repo.remember_delivery(self.SOURCE, f"{timestamp}:{signature}", now)
        clock = time.monotonic()
        if self._pruned_at is None or clock - self._pruned_at > self.PRUNE_EVERY_SECONDS:
            self._pruned_at = clock
            self.repo.forget_deliveries(self.SOURCE, now - REPLAY_MEMORY)
        return first


def _drop_replays(
    replays: Replays, watch: DatabaseWatch
) -> Callable[..., Awaitable[BoltResponse | None]]:
    """A signed request seen before is answered 200 and dropped. Only over HTTP: a
    Socket Mode envelope carries no signature (and comes over our own connection).

    With the database unreachable the request is not let through unchecked: the
    error goes to the error handler, which answers 200 and tells the user to try
    again (every listener with an effect needs the database anyway). Socket Mode
    has no such check, so while an outage is known it probes the database instead,
    which is how the end of an outage is noticed there.
    """

    async def middleware(
        request: AsyncBoltRequest, next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        timestamp = _header(request, "x-slack-request-timestamp")
        signature = _header(request, "x-slack-signature")
        if timestamp and signature:
            try:
                first = await asyncio.wait_for(
                    asyncio.to_thread(replays.first, timestamp, signature), REPLAY_CHECK_SECONDS
                )
            except TimeoutError:
                raise DatabaseUnreachable(
                    f"no answer within {REPLAY_CHECK_SECONDS:g} s to the replay check"
                ) from None
            watch.ok()
            if not first:
                log.info("slack request replayed", timestamp=timestamp)
                return BoltResponse(status=200, body="")
        elif watch.down:
            if not await asyncio.to_thread(database_reachable, replays.repo.engine):
                raise DatabaseUnreachable("the database did not answer a probe")
            watch.ok()
        await next()
        return None

    return middleware


def _header(request: AsyncBoltRequest, name: str) -> str | None:
    values = request.headers.get(name) or []
    return values[0] if values else None


def _drop_repeated_events(
    repo: Repository, watch: DatabaseWatch
) -> Callable[..., Awaitable[BoltResponse | None]]:
    """Slack redelivers an Events API event it thinks we missed (over HTTP and Socket
    Mode alike); Bolt does not deduplicate, so the event id is remembered here."""

    async def middleware(
        body: dict[str, Any], next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if isinstance(event_id, str) and event_id:
            first = await asyncio.to_thread(repo.remember_delivery, "slack-event", event_id[:200])
            watch.ok()
            if not first:
                return BoltResponse(status=200, body="")
        await next()
        return None

    return middleware


class SlackEventsEndpoint:
    """POST /slack/events: verify, validate, dedupe, then hand to Bolt."""

    def __init__(self, app: AsyncApp, signing_secret: str, repo: Repository) -> None:
        self.app = app
        self.secret = signing_secret.encode()
        self.repo = repo

    async def handle(self, request: Request) -> Response:
        try:
            body = await read_body(request)
            self._verify(body, request)
            parsed = _check_shape(body, request.headers.get("content-type", ""))
        except RejectedRequest as rejected:
            log.info("slack request rejected", status=rejected.status, reason=rejected.reason)
            return rejected.response()
        # Bolt would parse the text again, guessing its kind from it: a form containing
        # "payload" anywhere (`/incident declare payload API down`, a channel named
        # #payload) became {} and was answered 404, one starting with "{" raised. So it
        # gets the body as checked above; the raw text is what its signature check reads.
        headers: dict[str, str | Sequence[str]] = {k: [v] for k, v in request.headers.items()}
        bolt_request = AsyncBoltRequest(body="", query=request.url.query, headers=headers)
        bolt_request.raw_body = body.decode("utf-8")
        bolt_request.body = parsed
        bolt_request.context = build_async_context(AsyncBoltContext({}), parsed)
        bolt_response = await self.app.async_dispatch(bolt_request)
        return Response(
            content=bolt_response.body,
            status_code=bolt_response.status,
            headers={k: v[0] for k, v in bolt_response.headers.items() if v},
        )

    def _verify(self, body: bytes, request: Request) -> None:
        """Slack's signature over the raw bytes. Nothing here can raise but the
        rejection: headers are strict ASCII shapes before they are used, and the
        body is not decoded (slack_sdk's verifier decodes it as UTF-8, and compares
        str signatures, which raises for non-ASCII ones)."""
        timestamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature", "")
        if not timestamp or not signature:
            raise RejectedRequest(401, "missing Slack signature headers")
        # Not str.isdigit(): "²" and other Unicode digits pass it and int() refuses them.
        if not _TIMESTAMP.fullmatch(timestamp):
            raise RejectedRequest(401, "X-Slack-Request-Timestamp is not a number")
        if abs(time.time() - int(timestamp)) > SIGNATURE_WINDOW_SECONDS:
            raise RejectedRequest(401, "stale request timestamp")
        expected = hmac.new(
            self.secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256
        ).hexdigest()
        if not _SIGNATURE.fullmatch(signature) or not hmac.compare_digest(
            f"v0={expected}", signature
        ):
            raise RejectedRequest(401, "invalid signature")


def _check_shape(body: bytes, content_type: str) -> dict[str, Any]:
    """400 for a body Bolt could not use; else the body as Bolt should see it: the JSON
    object, the interaction payload, or the slash command's form."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RejectedRequest(400, "body is not UTF-8") from None
    if content_type.startswith("application/json"):
        return _json_object(text, "body")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        raise RejectedRequest(400, f"unsupported content type {content_type[:80]!r}")
    form = parse_qs(text, keep_blank_values=True)
    if "payload" in form:
        payload = _json_object(form["payload"][0], "payload field")
        if not isinstance(payload.get("type"), str):
            raise RejectedRequest(400, "payload has no interaction type")
        return payload
    if "command" not in form:
        raise RejectedRequest(400, "form has neither a slash command nor an interaction payload")
    return {name: values[0] for name, values in form.items()}


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise RejectedRequest(400, f"{what} is not valid JSON") from None
    except ValueError:
        # Python refuses to convert integers of more than 4,300 digits (CVE-2020-10735).
        raise RejectedRequest(400, f"{what} holds a number too long to read") from None
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
