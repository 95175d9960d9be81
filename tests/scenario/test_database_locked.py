"""A lock held on the inbox by another session: webhooks answer 503 with
Retry-After within seconds (not when the sender gives up), /readyz says not
ready, and both recover once the lock is released. Real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.bot_process import BotProcess
from tests.support.db_locks import inbox_locked

DATA = Path(__file__).resolve().parents[1] / "data"


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


def test_webhooks_and_readyz_answer_503_quickly_while_the_inbox_is_locked(
    database_url: str,
) -> None:
    alerts = json.loads((DATA / "alertmanager-error-rate.json").read_text())
    page = json.loads((DATA / "pagerduty-incident-triggered.json").read_text())
    bot = BotProcess(database_url, "http://127.0.0.1:9/api/", "").start()
    try:
        assert bot.alertmanager(alerts).status_code == 202
        with inbox_locked(database_url):
            for send in (lambda: bot.alertmanager(alerts), lambda: bot.pagerduty(page)):
                answer, took = timed(send)
                assert answer.status_code == 503, answer.text
                assert answer.headers["retry-after"] == "5"
                assert answer.json() == {"error": "database unavailable, retry later"}
                assert took < 5, took
            ready, took = timed(lambda: httpx.get(f"{bot.url}/readyz", timeout=10))
            assert ready.status_code == 503
            assert ready.json() == {"status": "unavailable", "database": "locked"}
            assert took < 3, took
            assert httpx.get(f"{bot.url}/healthz").status_code == 200
            # Reached, only locked: the "database down" alert is not the one to fire.
            assert "nexus_database_up 1.0" in httpx.get(f"{bot.url}/metrics").text
        ready = httpx.get(f"{bot.url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert bot.alertmanager(alerts).status_code == 202
        assert bot.pagerduty(page).status_code == 202
        bot.wait_applied()
    finally:
        code = bot.stop()
        print(bot.stderr[-5000:])  # shown if the test fails
    assert code == 0
