"""Composition root: settings → store → adapters → the ASGI app and its background tasks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import sqlalchemy as sa
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot import metrics
from bot.actions.base import Executor
from bot.core import Core, build_core
from bot.domain.playbooks import LoadedPlaybooks
from bot.drills.schedule import DrillScheduler
from bot.ingest.inbox import Inbox, InboxWorker, Ingress
from bot.ingest.webhooks import (
    AlertmanagerWebhook,
    PagerDutyWebhook,
    alertmanager_together,
    inbox_appliers,
)
from bot.middleware import MeasureRequests
from bot.reviews.follow_up import enqueue_due_checks
from bot.scheduler import build_scheduler
from bot.settings import Settings
from bot.slack.app import SlackEventsEndpoint, build_slack_app, not_configured
from bot.slack.drill_notices import SlackDrillNotices
from bot.slack.outbox import OutboxWorker
from bot.slack.playbook_reminders import remind_due_playbooks
from bot.store.db import database_ready
from bot.timeline.delivery import DeliveryWorker
from bot.web import snapshot
from bot.web.routes import StatusPage

log = structlog.get_logger("bot.app")


def create_app(
    settings: Settings,
    engine: sa.Engine,
    playbooks: LoadedPlaybooks,
    executors: dict[str, Executor] | None = None,
    rehearsals: dict[str, Executor] | None = None,
) -> Starlette:
    core = build_core(settings, engine, playbooks, executors, rehearsals)
    repo, service, flow = core.repo, core.incidents, core.flow
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    client = AsyncWebClient(token=token, base_url=settings.slack_api_url) if token else None
    lease = settings.outbox_lease_seconds
    outbox = (
        OutboxWorker(
            engine,
            client,
            lease_seconds=lease,
            call_timeout=min(30.0, lease / 2),
            render_root=core.render_root,
        )
        if client
        else None
    )
    deliveries = (
        DeliveryWorker(engine, core.senders, on_report=core.on_delivery_report, lease_seconds=lease)
        if core.senders
        else None
    )
    status_page = StatusPage(settings, engine)
    drill_schedule = DrillScheduler(
        settings, repo, core.drills, playbooks, SlackDrillNotices(settings.drill_channel())
    )

    def refresh_status_page() -> None:
        with repo.session() as s:
            snapshot.refresh(s, settings)

    inbox = Inbox(engine)
    ingress = Ingress()
    appliers = {**inbox_appliers(service), "drill": core.drills.apply}
    inbox_worker = InboxWorker(
        inbox, appliers, ingress=ingress, together=alertmanager_together(service)
    )

    slack_app = (
        build_slack_app(settings, client, service, flow, core.components, core.reviews, core.drills)
        if client
        else None
    )
    if slack_app is not None and settings.slack_signing_secret is not None:
        slack_endpoint: Callable[[Request], Awaitable[Response]] = SlackEventsEndpoint(
            slack_app, settings.slack_signing_secret.get_secret_value(), repo
        ).handle
    else:
        slack_endpoint = not_configured
    secrets = [s.get_secret_value() for s in settings.pagerduty_webhook_secrets]
    am_token = (
        settings.alertmanager_token.get_secret_value() if settings.alertmanager_token else None
    )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        # Ready when a write to the inbox can start within a second: "unreachable"
        # or "locked" (a lock held elsewhere would make the webhooks answer 503).
        problem = await asyncio.to_thread(database_ready, engine)
        metrics.DATABASE_UP.set(0 if problem == "unreachable" else 1)
        if problem is not None:
            return JSONResponse({"status": "unavailable", "database": problem}, 503)
        return JSONResponse({"status": "ready", "database": "ok"})

    async def prometheus_metrics(request: Request) -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        log.info("event loop", loop=f"{type(loop).__module__}.{type(loop).__name__}")
        # Drill schedules first: a tick missed while the bot was down runs now, and
        # a new installation records where its schedules start counting.
        try:
            await asyncio.to_thread(drill_schedule.sweep)
        except sa.exc.SQLAlchemyError as exc:  # the 5 s sweep tries again
            log.warning("drill schedules not checked at start-up", error=str(exc)[:200])
        tasks = [asyncio.create_task(inbox_worker.run(), name="inbox")]
        if outbox is not None:
            tasks.append(asyncio.create_task(outbox.run(), name="outbox"))
        if deliveries is not None:
            tasks.append(asyncio.create_task(deliveries.run(), name="deliveries"))
        scheduler = build_scheduler(
            {
                "escalation-sweep": (core.ladder.sweep, 1.0),
                "remediation-request-expiry": (flow.expire_due, 5.0),
                "update-reminders": (service.remind_updates, 1.0),
                # Resolved incidents leave the page's history as they age.
                "status-page-refresh": (refresh_status_page, 60.0),
                "playbook-review-reminders": (
                    lambda: remind_due_playbooks(repo, playbooks, settings.nexus_incident_channel),
                    300.0,
                ),
                "review-follow-up": (
                    lambda: enqueue_due_checks(repo, settings.review),
                    60.0,
                ),
                # Finishes drills that are complete or past their deadline.
                "drill-sweep": (core.drills.sweep, 2.0),
                # Starts scheduled drills (once across replicas: the tick row decides).
                "drill-schedule": (drill_schedule.sweep, 5.0),
            }
        )
        scheduler.start()
        socket_mode = None
        if slack_app is not None and settings.slack_app_token is not None:
            socket_mode = AsyncSocketModeHandler(
                slack_app,
                settings.slack_app_token.get_secret_value(),
                web_client=AsyncWebClient(base_url=settings.slack_api_url),
            )
            # In the background: a Slack outage or a revoked app token must not keep
            # /healthz and the PagerDuty/Alertmanager webhooks from starting.
            tasks.append(asyncio.create_task(_connect(socket_mode), name="socket-mode"))
        app.state.core = core
        try:
            yield
        finally:
            if socket_mode is not None:
                await socket_mode.close_async()  # type: ignore[no-untyped-call]
            scheduler.shutdown(wait=False)
            await inbox_worker.stop()
            if outbox is not None:
                await outbox.stop()
            if deliveries is not None:
                await deliveries.stop()
            for sender in core.senders.values():
                close = getattr(sender, "close", None)
                if close is not None:  # HTTP clients (PagerDuty) hold connections
                    await asyncio.to_thread(close)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    return Starlette(
        middleware=[Middleware(MeasureRequests)],
        lifespan=lifespan,
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", prometheus_metrics, methods=["GET"]),
            Route("/slack/events", slack_endpoint, methods=["POST"]),
            *status_page.routes(),
            Route(
                "/webhooks/pagerduty",
                PagerDutyWebhook(inbox, secrets, inbox_worker.wake, ingress).handle,
                methods=["POST"],
            ),
            Route(
                "/webhooks/alertmanager",
                AlertmanagerWebhook(
                    inbox,
                    am_token,
                    inbox_worker.wake,
                    ingress,
                    settings.ingest_workers,
                    settings.ingest_max_backlog,
                ).handle,
                methods=["POST"],
            ),
        ],
    )


async def _connect(socket_mode: AsyncSocketModeHandler) -> None:
    try:
        await socket_mode.connect_async()  # type: ignore[no-untyped-call]
        log.info("slack socket mode connected")
    except Exception as exc:  # the client retries by itself once connected
        log.error("slack socket mode could not connect", error=str(exc)[:300])


__all__ = ["Core", "create_app"]
