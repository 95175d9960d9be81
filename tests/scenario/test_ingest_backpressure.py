"""Storm behaviour: a full ingest backlog answers 503 and loses nothing; PagerDuty
webhooks do not queue behind bulk alerts."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bot.store.db import make_engine
from tests.fakes.slack import FakeSlack
from tests.support.bot_process import BotProcess
from tests.support.postgres import drop_database

DATA = Path(__file__).resolve().parents[1] / "data"


def big_batch(index: int, size: int) -> dict[str, Any]:
    body = json.loads((DATA / "alertmanager-frenly-ai.json").read_text())
    template = body["alerts"][0]
    body["groupKey"] = f'{{}}:{{storm="{index % 4}"}}'
    body["alerts"] = []
    for n in range(size):
        alert = copy.deepcopy(template)
        alert["fingerprint"] = f"storm-{index:03d}-{n:04d}"
        alert["labels"]["instance"] = f"node-{n}"
        body["alerts"].append(alert)
    return body


def stored_alerts(database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar_one())
    finally:
        engine.dispose()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def storm(bot: BotProcess, batches: int, size: int) -> list[tuple[int, int, float]]:
    """Send `batches` batches at once; (status, alerts in batch, finish order stamp)."""
    results: list[tuple[int, int, float]] = []
    barrier = threading.Barrier(batches)
    lock = threading.Lock()
    clock = iter(range(10_000))

    def send(index: int) -> None:
        body = big_batch(index, size)
        barrier.wait()
        status = bot.alertmanager(body).status_code
        with lock:
            results.append((status, size, next(clock)))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(batches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_full_backlog_is_503_and_nothing_is_lost(database_url: str, slack: FakeSlack) -> None:
    bot = BotProcess(
        database_url, slack.url, slack.token or "", INGEST_WORKERS="1", INGEST_MAX_BACKLOG="1"
    ).start()
    try:
        results = storm(bot, batches=12, size=400)
        statuses = [status for status, _, _ in results]
        assert set(statuses) <= {202, 503}
        assert statuses.count(503) > 0  # the backlog really filled
        accepted = sum(size for status, size, _ in results if status == 202)
        bot.wait_applied()
        assert stored_alerts(database_url) == accepted  # every 202 is stored, no 503 is
        assert "nexus_ingest_refused_total" in bot_metrics(bot)
    finally:
        bot.stop()


def bot_metrics(bot: BotProcess) -> str:
    return httpx.get(f"{bot.url}/metrics").text


def test_pagerduty_webhook_does_not_wait_behind_a_storm(sqlite_url: str, slack: FakeSlack) -> None:
    bot = BotProcess(sqlite_url, slack.url, slack.token or "", INGEST_WORKERS="1").start()
    try:
        order: list[str] = []
        lock = threading.Lock()

        def bulk(index: int) -> None:
            bot.alertmanager(big_batch(index, 500))
            with lock:
                order.append(f"am-{index}")

        senders = [threading.Thread(target=bulk, args=(i,)) for i in range(10)]
        for t in senders:
            t.start()
        trigger = json.loads((DATA / "pagerduty-incident-triggered.json").read_text())
        answer = bot.pagerduty(trigger)
        with lock:
            order.append("pagerduty")
        for t in senders:
            t.join()
        assert answer.status_code == 202
        # One lane thread writes the ten bulk batches to the inbox one by one; the
        # PagerDuty webhook is stored outside that lane and answered while bulk
        # batches are still queued (and the inbox worker applies it first).
        assert order.index("pagerduty") < len(order) - 1, order
    finally:
        bot.stop()


@pytest.mark.postgres
def test_database_down_is_503_never_202(
    postgres_url: str, postgres_server: str, slack: FakeSlack
) -> None:
    bot = BotProcess(postgres_url, slack.url, slack.token or "").start()
    try:
        assert bot.alertmanager(big_batch(0, 3)).status_code == 202
        name = postgres_url.rsplit("/", 1)[1]
        admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
        drop_database(admin, name)
        admin.dispose()
        answer = bot.alertmanager(big_batch(1, 3))
        assert answer.status_code == 503
        assert answer.headers["retry-after"]
        trigger = json.loads((DATA / "pagerduty-incident-triggered.json").read_text())
        assert bot.pagerduty(trigger).status_code == 503
    finally:
        bot.stop()


def test_batches_accepted_by_a_bot_that_died_are_applied_on_the_next_start(
    database_url: str, slack: FakeSlack
) -> None:
    # First run: accept (202) and die at once with SIGKILL, no shutdown at all.
    first = BotProcess(database_url, slack.url, slack.token or "").start()
    answers = [first.alertmanager(big_batch(i, 200)).status_code for i in range(6)]
    first.kill()
    assert answers == [202] * 6
    # Whatever the first process had not applied yet is still in the inbox...
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            waiting = conn.execute(sa.text("SELECT count(*) FROM inbox")).scalar_one()
            stored = conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar_one()
    finally:
        engine.dispose()
    assert stored + 200 * waiting >= 6 * 200
    # ...and the next process applies it: all 1,200 alerts, one thread per group.
    second = BotProcess(database_url, slack.url, slack.token or "").start()
    try:
        # A row the first process had claimed waits out its 15 s lease first.
        second.wait_applied(timeout=60)
        assert stored_alerts(database_url) == 6 * 200
        assert second.scalar("SELECT count(*) FROM incidents") == 4  # groupKey storm=0..3
    finally:
        second.stop()
