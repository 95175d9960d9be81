"""Helpers for the Slack tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.outbox_worker import OutboxWorker
from bot.store.models import Incident, OutboxMessage
from tests.fakes.slack import FakeSlack


def slack_client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=slack.token, base_url=slack.url, timeout=5)


def make_worker(engine: sa.Engine, slack: FakeSlack, **overrides: Any) -> OutboxWorker:
    """A worker tuned for tests: fast polling and backoff; Slack's default pacing."""
    options: dict[str, Any] = {
        "poll_interval": 0.05,
        "backoff_base": 0.05,
        "backoff_cap": 0.5,
        "call_timeout": 5.0,
        "lease_seconds": 10.0,
    }
    options.update(overrides)
    return OutboxWorker(engine, slack_client(slack), **options)


@asynccontextmanager
async def running(*workers: OutboxWorker) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield
    finally:
        for worker in workers:
            await worker.stop()
        await asyncio.gather(*tasks)


def outbox_rows(engine: sa.Engine) -> list[OutboxMessage]:
    with sa.orm.Session(engine) as session:
        return list(session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))


def incident_row(engine: sa.Engine, incident_id: int) -> Incident:
    with sa.orm.Session(engine) as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return incident


def all_done(engine: sa.Engine) -> bool:
    """No Slack outbox row is pending any more (other outputs' rows are not the worker's)."""
    return all(row.state != "pending" for row in outbox_rows(engine) if row.output == "slack")


def section(text: str) -> list[dict[str, Any]]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]


def assert_each_once(slack: FakeSlack, expected: list[str]) -> None:
    counts = Counter(slack.texts())
    assert counts == Counter(expected), counts


async def drain(worker: OutboxWorker, engine: sa.Engine, within: float = 10) -> None:
    """Call deliver_due until nothing is pending (sleeping through pacing/backoff)."""
    deadline = asyncio.get_running_loop().time() + within
    while not all_done(engine):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("outbox not drained")
        if not await worker.deliver_due():
            await asyncio.sleep(0.02)
