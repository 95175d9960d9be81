"""`nexus-bot serve`: settings → database (migrations applied) → playbooks,
executors and notifiers → the app (bot/app.py, the composition root) → uvicorn.

uvicorn handles SIGTERM/SIGINT: it stops accepting connections, lets requests
in flight finish, runs the lifespan shutdown, and the process exits 0.
"""

from __future__ import annotations

import math
import signal
from types import FrameType

import sqlalchemy as sa
import structlog
import uvicorn
from sqlalchemy.engine import make_url

from bot.actions.executors import build_executors
from bot.actions.rehearsal import build_rehearsal_executors
from bot.app import create_app
from bot.domain.playbooks import load_playbooks
from bot.http_limits import HttpLimits, LimitConcurrency, connection_cap, protocol_class
from bot.logging import configure_logging
from bot.settings import Settings, disabled_features
from bot.store.db import make_engine, upgrade_database, warm_pool

log = structlog.get_logger("bot.server")


def _drained(signum: int, frame: FrameType | None) -> None:
    log.info("shutdown signal handled", signal=signal.Signals(signum).name)


def run_server(settings: Settings) -> int:
    json_logs = {"auto": None, "json": True, "console": False}[settings.log_format]
    configure_logging(settings.log_level, json=json_logs, secrets=settings.secret_values())
    log.info(
        "paths",
        config=str(settings.nexus_config),
        playbooks=str(settings.nexus_playbooks),
        workdir=str(settings.nexus_workdir),
        database=make_url(settings.database_url).render_as_string(hide_password=True),
    )
    for line in disabled_features(settings):
        log.warning("feature disabled", reason=line)
    engine = make_engine(
        settings.database_url,
        lock_timeout=settings.database_lock_timeout.total_seconds(),
        statement_timeout=settings.database_statement_timeout.total_seconds() or None,
    )
    try:
        upgrade_database(engine)
    except sa.exc.SQLAlchemyError as exc:
        log.error("database unavailable at start-up", error=str(exc).splitlines()[0])
        return 1
    # Open the connections a burst will need now, not during the first storm.
    warm_pool(engine, settings.ingest_workers + 4)
    playbooks = load_playbooks([settings.nexus_playbooks], settings.allowed_targets)
    if playbooks.problems:
        for problem in playbooks.problems:
            log.error("invalid playbook", problem=str(problem))
        log.error("refusing to start with invalid playbooks: run `nexus-bot validate`")
        return 1
    executors, unavailable = build_executors(settings)
    for line in unavailable:
        log.warning("remediation unavailable", reason=line)
    # A drill's requests run these: dry runs, throwaway branches, permission checks.
    rehearsals = build_rehearsal_executors(settings)
    app = create_app(settings, engine, playbooks, executors, rehearsals)
    limits = HttpLimits(
        request_timeout=settings.http_request_timeout.total_seconds(),
        keepalive_timeout=settings.http_keepalive_timeout.total_seconds(),
        max_connections=connection_cap(settings.http_max_connections),
        max_concurrency=settings.http_max_concurrency,
    )
    config = uvicorn.Config(
        LimitConcurrency(app, limits.max_concurrency),
        host=settings.host,
        port=settings.port,
        # httptools with a request deadline, idle timeout and connection cap (bot/http_limits.py)
        http=protocol_class(limits),
        timeout_keep_alive=math.ceil(limits.keepalive_timeout),  # the protocol uses the exact value
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
    log.info(
        "serving",
        host=settings.host,
        port=settings.port,
        database=engine.dialect.name,
        request_timeout=limits.request_timeout,
        keepalive_timeout=limits.keepalive_timeout,
        max_connections=limits.max_connections,
        max_concurrency=limits.max_concurrency,
    )
    # Server.run rather than asyncio.run(serve()): it installs uvloop when present.
    server.run()
    engine.dispose()
    log.info("stopped")
    return 0
