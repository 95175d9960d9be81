"""GET /status, /status.json, /status/feed.atom and the page's two assets.

Every answer renders the stored snapshot (bot/web/snapshot.py), read at most
once a second per replica, so an alert storm does not reach these endpoints'
database work. Answers carry an ETag and Last-Modified (304 on a match), a
strict Content-Security-Policy (no inline script or style anywhere) and
`X-Content-Type-Options: nosniff`.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.settings import Settings
from bot.store.db import READ_ONLY_OPTIONS
from bot.web import snapshot as snapshots
from bot.web.assets import SCRIPT, STYLESHEET
from bot.web.documents import atom_feed, status_json
from bot.web.model import StatusSnapshot
from bot.web.page import render_page

log = structlog.get_logger("bot.web")

CACHE_SECONDS = 1.0
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class _Cached:
    snapshot: StatusSnapshot
    etag: str
    read_at: float


class StatusPage:
    """The endpoints of one replica, with their one-second snapshot cache."""

    def __init__(self, settings: Settings, engine: sa.Engine) -> None:
        self.settings = settings
        self.engine = engine.execution_options(**READ_ONLY_OPTIONS)
        self._cached: _Cached | None = None
        self._lock = threading.Lock()

    def routes(self) -> list[Route]:
        return [
            Route("/status", self._endpoint(self._html), methods=["GET", "HEAD"]),
            Route("/status.json", self._endpoint(self._json), methods=["GET", "HEAD"]),
            Route("/status/feed.atom", self._endpoint(self._atom), methods=["GET", "HEAD"]),
            Route("/status/assets/status.css", _asset(STYLESHEET, "text/css"), methods=["GET"]),
            Route("/status/assets/status.js", _asset(SCRIPT, "text/javascript"), methods=["GET"]),
        ]

    # -- the snapshot ------------------------------------------------------------

    def current(self) -> tuple[StatusSnapshot, str]:
        """The stored snapshot (or one built now, before anything was ever published)."""
        cached = self._cached
        if cached is not None and time.monotonic() - cached.read_at < CACHE_SECONDS:
            return cached.snapshot, cached.etag
        with self._lock, Session(self.engine) as session, session.begin():
            stored = snapshots.read(session)
            if stored is None:
                built = snapshots.build(session, self.settings)
                stored = built, snapshots.fingerprint(built)
        self._cached = _Cached(stored[0], stored[1], time.monotonic())
        return stored

    # -- endpoints ---------------------------------------------------------------

    def _endpoint(
        self, render: Callable[[StatusSnapshot, str], Response]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                snapshot, etag = await asyncio.to_thread(self.current)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("status page unavailable", error=str(exc).splitlines()[0][:200])
                return JSONResponse(
                    {"error": "status temporarily unavailable"},
                    status_code=503,
                    headers={"Retry-After": "5", **SECURITY_HEADERS},
                )
            response = render(snapshot, self._page_url(request))
            kind = hashlib.sha256((response.media_type or "").encode()).hexdigest()[:6]
            tag = f'"{etag}-{kind}"'
            headers = {
                "ETag": tag,
                "Last-Modified": format_datetime(snapshot.updated_at, usegmt=True),
                "Cache-Control": "public, no-cache",
                **SECURITY_HEADERS,
            }
            if _not_modified(request, tag, snapshot):
                return Response(status_code=304, headers=headers)
            response.headers.update(headers)
            if request.method == "HEAD":
                return Response(status_code=200, headers=dict(response.headers))
            return response

        return endpoint

    def _page_url(self, request: Request) -> str:
        configured = self.settings.status_page.url
        if configured:
            return configured.rstrip("/")
        return str(request.base_url).rstrip("/") + "/status"

    @staticmethod
    def _html(snapshot: StatusSnapshot, page_url: str) -> Response:
        return Response(render_page(snapshot, page_url), media_type="text/html; charset=utf-8")

    @staticmethod
    def _json(snapshot: StatusSnapshot, page_url: str) -> Response:
        return JSONResponse(status_json(snapshot, page_url))

    @staticmethod
    def _atom(snapshot: StatusSnapshot, page_url: str) -> Response:
        return Response(atom_feed(snapshot, page_url), media_type="application/atom+xml")


def _not_modified(request: Request, tag: str, snapshot: StatusSnapshot) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        return tag in [t.strip() for t in if_none_match.split(",")] or if_none_match == "*"
    since = request.headers.get("if-modified-since")
    if since:
        try:
            return snapshot.updated_at.replace(microsecond=0) <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


def _asset(body: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    encoded = body.encode()
    tag = f'"{hashlib.sha256(encoded).hexdigest()[:16]}"'
    headers: dict[str, Any] = {
        "ETag": tag,
        "Cache-Control": "public, max-age=300",
        **SECURITY_HEADERS,
    }

    async def asset(request: Request) -> Response:
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers=headers)
        return Response(encoded, media_type=media_type, headers=headers)

    return asset
