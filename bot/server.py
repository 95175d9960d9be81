"""`nexus-bot serve`: the composition root.

Settings → database (migrations applied) → Starlette app → uvicorn. uvicorn
handles SIGTERM/SIGINT: it stops accepting connections, lets requests in
flight finish, runs the lifespan shutdown, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import time
from types import FrameType

import sqlalchemy as sa
import structlog
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot import metrics
from bot.logging import configure_logging
from bot.settings import Settings, disabled_features
from bot.store.db import database_reachable, make_engine, upgrade_database

log = structlog.get_logger("bot.server")


def create_app(settings: Settings, engine: sa.Engine) -> Starlette:
    """The ASGI app. Later features add their routes here."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        reachable = await run_in_threadpool(database_reachable, engine)
        metrics.DATABASE_UP.set(1 if reachable else 0)
        if not reachable:
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
        return JSONResponse({"status": "ready", "database": "ok"})

    async def prometheus_metrics(request: Request) -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        middleware=[Middleware(MeasureRequests)],
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", prometheus_metrics, methods=["GET"]),
        ],
    )


class MeasureRequests:
    """ASGI middleware: count and time every HTTP request by route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics.HTTP_REQUESTS.labels(route, str(status)).inc()
            metrics.HTTP_LATENCY.labels(route).observe(time.perf_counter() - started)


def _drained(signum: int, frame: FrameType | None) -> None:
    log.info("shutdown signal handled", signal=signal.Signals(signum).name)


def run_server(settings: Settings) -> int:
    configure_logging(settings.log_level, secrets=settings.secret_values())
    for line in disabled_features(settings):
        log.warning("feature disabled", reason=line)
    engine = make_engine(settings.database_url)
    try:
        upgrade_database(engine)
    except sa.exc.SQLAlchemyError as exc:
        log.error("database unavailable at start-up", error=str(exc).splitlines()[0])
        return 1
    app = create_app(settings, engine)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # our structlog setup formats uvicorn's records too
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=20,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the captured signal once it has drained; with these
    # handlers in place that re-raise is a no-op and a drained shutdown exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _drained)
    log.info("serving", host=settings.host, port=settings.port, database=engine.dialect.name)
    asyncio.run(server.serve())
    engine.dispose()
    log.info("stopped")
    return 0
