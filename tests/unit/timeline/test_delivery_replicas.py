"""The delivery worker across replicas and over its lifetime: races, expired
leases, wake-ups, stopping, database outages."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from structlog.testing import capture_logs

from bot.store.db import make_engine, upgrade_database
from bot.timeline.delivery import pending_deliveries
from tests.unit.timeline.delivery_support import (
    Answer,
    FarEnd,
    HttpSender,
    add,
    drain,
    make_worker,
    new_incident,
    rows,
    running,
    wait_until,
)


@pytest.fixture
def far_end() -> Iterator[FarEnd]:
    with FarEnd() as server:
        yield server


@pytest.fixture
def replica_engine(engine: sa.Engine) -> Iterator[sa.Engine]:
    """A second engine on the same database: another replica's connections."""
    other = make_engine(engine.url.render_as_string(hide_password=False))
    yield other
    other.dispose()


class CountReports:
    def __init__(self) -> None:
        self.reports: list[Mapping[str, Any]] = []

    def __call__(
        self, session: Session, incident_id: int | None, output: str, report: Mapping[str, Any]
    ) -> None:
        self.reports.append(report)


async def test_two_replicas_deliver_every_row_exactly_once(
    engine: sa.Engine, replica_engine: sa.Engine, far_end: FarEnd
) -> None:
    names = []
    for i in range(20):
        incident = new_incident(engine)
        for j in range(2):
            names.append(f"incident-{i}-{j}")
            add(engine, names[-1], incident_id=incident)
        names.append(f"loose-{i}")
        add(engine, names[-1], key=f"relay-{i % 4}")
    first = make_worker(engine, {"mail": HttpSender(f"{far_end.url}/first")})
    second = make_worker(replica_engine, {"mail": HttpSender(f"{far_end.url}/second")})

    async with running(first, second):
        await wait_until(lambda: pending_deliveries(engine, "mail") == 0, within=30)

    assert Counter(far_end.names()) == Counter(names)  # each once, none lost
    stored = rows(engine)
    assert {r.state for r in stored.values()} == {"sent"}
    assert {r.attempts for r in stored.values()} == {1}  # no claim was taken twice
    for i in range(20):  # and the order held within each incident
        order = [n for n in far_end.names() if n.startswith(f"incident-{i}-")]
        assert order == [f"incident-{i}-0", f"incident-{i}-1"]


async def test_a_claim_whose_lease_ran_out_is_delivered_by_another_replica(
    engine: sa.Engine, replica_engine: sa.Engine, far_end: FarEnd
) -> None:
    incident = new_incident(engine)
    add(engine, "slow", incident_id=incident)
    report = {"problem": "refused"}
    far_end.answer("slow", Answer(hold=True, report=report), Answer(report=report))
    hung_hook, live_hook = CountReports(), CountReports()
    hung = make_worker(engine, {"mail": HttpSender(far_end.url)}, lease_seconds=1.0)
    hung.on_report = hung_hook
    live = make_worker(replica_engine, {"mail": HttpSender(far_end.url)}, on_report=live_hook)

    with capture_logs() as logs:
        hung_pass = asyncio.create_task(hung.deliver_due())
        await wait_until(lambda: far_end.names() == ["slow"])
        assert await live.deliver_due() == 0  # the claim holds while its lease runs
        await drain(live, replica_engine)  # once the lease has run out
        far_end.release.set()
        assert await hung_pass == 1  # it did deliver, but the row was settled already

    row = rows(engine)["slow"]
    assert (row.state, row.attempts) == ("sent", 2)
    assert far_end.names() == ["slow", "slow"]  # the window a lease cannot close
    assert (len(hung_hook.reports), len(live_hook.reports)) == (0, 1)  # reported once
    events = [e["event"] for e in logs]
    assert "delivery_outlived_lease" in events
    assert "delivery_settle_lost" in events


async def test_an_enqueue_wakes_a_running_worker(engine: sa.Engine, far_end: FarEnd) -> None:
    worker = make_worker(engine, {"mail": HttpSender(far_end.url)}, poll_interval=30)

    async with running(worker):
        await asyncio.sleep(0.1)  # idle, waiting out its 30 s poll
        enqueued = time.monotonic()
        add(engine, "urgent")
        await wait_until(lambda: far_end.names() == ["urgent"], within=5)
        latency = far_end.times("urgent")[0] - enqueued

    assert latency < 2.0  # not the 30 s poll
    assert rows(engine)["urgent"].state == "sent"


async def test_stop_returns_promptly_when_idle(engine: sa.Engine, far_end: FarEnd) -> None:
    worker = make_worker(engine, {"mail": HttpSender(far_end.url)}, poll_interval=30)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.1)

    started = time.monotonic()
    await worker.stop()

    assert time.monotonic() - started < 1.0  # not the 30 s poll
    assert task.done() and task.exception() is None
    add(engine, "after")  # and sends nothing more
    await asyncio.sleep(0.1)
    assert far_end.names() == []


async def test_stop_abandons_a_hung_send_after_the_grace(
    engine: sa.Engine, far_end: FarEnd
) -> None:
    add(engine, "hung")
    far_end.answer("hung", Answer(hold=True))
    worker = make_worker(engine, {"mail": HttpSender(far_end.url)})
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: far_end.names() == ["hung"])

    started = time.monotonic()
    await worker.stop(grace=0.2)

    assert time.monotonic() - started < 2.0  # not the default 10 s grace
    assert task.done()
    row = rows(engine)["hung"]
    # Still claimed: another replica retries it once the lease runs out.
    assert (row.state, row.attempts) == ("pending", 1)
    far_end.release.set()


async def test_a_database_outage_is_logged_once_and_run_carries_on(
    sqlite_url: str, far_end: FarEnd
) -> None:
    engine = make_engine(sqlite_url)  # not migrated yet: every pass fails
    worker = make_worker(engine, {"mail": HttpSender(far_end.url)}, poll_interval=0.01)
    try:
        with capture_logs() as logs:
            async with running(worker):
                await asyncio.sleep(0.5)
                upgrade_database(engine)  # the database is back
                add(engine, "after the outage")
                await wait_until(lambda: far_end.names() == ["after the outage"])
    finally:
        engine.dispose()

    outage = [e for e in logs if e.get("worker") == "delivery"]
    assert [(e["log_level"], e["event"]) for e in outage if e["log_level"] != "debug"] == [
        ("warning", "database unavailable: retrying quietly until it is back"),
        ("info", "database available again"),
    ]
    assert outage[-1]["failed_passes"] >= 3  # retried all along, logged once
    assert not [e for e in logs if e["event"] == "delivery_pass_failed"]
