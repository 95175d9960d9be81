"""Slack requests while the incident database is unreachable: 200 within Slack's 3 s
and an ephemeral "try again", the error logged once per outage, never a 500.

The bot runs as a real `nexus-bot serve` process. PostgreSQL goes away and comes
back (connections refused, then allowed again); SQLite is a database the bot can
read but not write (as on a disk remounted read-only).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.slack.outage import UNREACHABLE
from bot.store.db import make_engine, upgrade_database
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_socket import FakeSlackSocket
from tests.support.bot_process import CHANNEL, BotProcess
from tests.support.postgres import PostgresOutage

OUTAGE_LOG = "slack: incident database unreachable"
BACK_LOG = "slack: incident database reachable again"
SLACK_DEADLINE = 3.0  # seconds Slack waits for an answer
APP_TOKEN = "xapp-1-A0NEXUS-4242424242-socketmodetestapptoken0123456789"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def mention(text: str, event_id: str) -> dict[str, Any]:
    return {
        "token": "x",
        "team_id": "T0FAKE000",
        "api_app_id": "A0NEXUS",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": {
            "type": "app_mention",
            "user": "U0ALICE",
            "text": f"<@U0FAKEBOT> {text}",
            "ts": "1700000999.000100",
            "channel": CHANNEL,
            "event_ts": "1700000999.000100",
        },
    }


def command(bot: BotProcess, text: str, **extra: str) -> httpx.Response:
    """As Slack sends it: every invocation has its own trigger_id, so two of the same
    command within one second are not byte-identical (which would be a replay)."""
    return bot.command(text, trigger_id=f"{uuid.uuid4().int}.1.{uuid.uuid4().hex}", **extra)


def timed(send: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = send()
    return answer, time.monotonic() - started


def assert_told_to_try_again(answer: httpx.Response, took: float) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"response_type": "ephemeral", "text": UNREACHABLE}
    assert took < SLACK_DEADLINE


def assert_every_surface_answers_200(bot: BotProcess, slack: FakeSlack, tag: str) -> None:
    """Commands, buttons and @mentions while the database is down."""
    for verb in ["list", "status 1", "declare Database is down", "ack 1", "help"]:
        assert_told_to_try_again(*timed(lambda v=verb: command(bot, v)))
    clicked, took = timed(
        lambda: bot.click(
            "incident.acknowledge", '{"i": 1}', response_url=slack.response_url(f"click-{tag}")
        )
    )
    assert (clicked.status_code, took < SLACK_DEADLINE) == (200, True), clicked.text
    told = slack.wait_for(lambda: slack.responses(f"click-{tag}"), timeout=10)
    assert told[0]["text"] == UNREACHABLE and told[0]["response_type"] == "ephemeral"
    before = len(slack.ephemeral())
    mentioned, took = timed(lambda: bot.slack(json_body=mention("list", f"Ev0DOWN{tag}")))
    assert (mentioned.status_code, took < SLACK_DEADLINE) == (200, True), mentioned.text
    slack.wait_for(lambda: len(slack.ephemeral()) > before, timeout=10)
    last = slack.ephemeral()[-1]
    assert (last["text"], last["user"], last["channel"]) == (UNREACHABLE, "U0ALICE", CHANNEL)


@pytest.mark.postgres
def test_postgres_going_away_twice_is_answered_and_logged_once_per_outage(
    postgres_url: str, postgres_server: str, slack: FakeSlack
) -> None:
    bot = BotProcess(postgres_url, slack.url, slack.token or "xoxb-test").start()
    database = PostgresOutage(postgres_server, postgres_url)
    try:
        declared = command(bot, "declare Before the outage", response_url=slack.response_url("d"))
        assert declared.status_code == 200
        slack.wait_for(lambda: slack.responses("d"), timeout=10)

        database.go_away()
        lists = [timed(lambda: command(bot, "list")) for _ in range(10)]
        for answer, took in lists:
            assert_told_to_try_again(answer, took)
        assert_every_surface_answers_200(bot, slack, "1")

        database.come_back()
        back = command(bot, "list")
        assert back.status_code == 200 and "Before the outage" in back.json()["text"]

        database.go_away()
        for _ in range(5):
            assert_told_to_try_again(*timed(lambda: command(bot, "list")))
        database.come_back()
        assert "Before the outage" in command(bot, "list").json()["text"]
        assert bot.scalar("SELECT count(*) FROM incidents") == 1  # no declare got through
    finally:
        bot.stop()
        database.admin.dispose()
        print(bot.stderr[-20000:])
    assert bot.stderr.count(OUTAGE_LOG) == 2
    assert bot.stderr.count(BACK_LOG) == 2
    assert "Failed to run listener function" not in bot.stderr  # Bolt's 500 path
    assert_background_workers_logged_once_per_outage(bot.stderr, outages=2)


def assert_background_workers_logged_once_per_outage(stderr: str, outages: int) -> None:
    """The inbox, the outbox and the sweeps retry every second or so while the
    database is away: one warning per worker and outage, no tracebacks."""
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    down: dict[str, int] = {}
    back: dict[str, int] = {}
    for line in lines:
        if line["event"].startswith("database unavailable"):
            assert line["level"] == "warning"
            down[line["worker"]] = down.get(line["worker"], 0) + 1
        elif line["event"] == "database available again":
            back[line["worker"]] = back.get(line["worker"], 0) + 1
    # Some worker saw the outage (which ones depends on what ticked while the database
    # was away: on a loaded machine a one-second sweep may not run in a short outage).
    assert down, down
    for worker, count in down.items():
        assert 1 <= count <= outages, (worker, count)
        # The last outage may end after the worker's last pass before shutdown.
        assert count - back.get(worker, 0) in (0, 1), (worker, count, back)
    assert "sweep failed" not in stderr
    assert "outbox_pass_failed" not in stderr
    assert "Traceback" not in stderr


def test_sqlite_the_bot_cannot_write_is_answered_and_logged_once(
    tmp_path: Path, slack: FakeSlack
) -> None:
    path = tmp_path / "nexus.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_database(engine)
    engine.dispose()
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    bot = BotProcess(read_only, slack.url, slack.token or "xoxb-test").start()
    try:
        lists = [timed(lambda: command(bot, "list")) for _ in range(10)]
        for answer, took in lists:
            assert_told_to_try_again(answer, took)
        assert_every_surface_answers_200(bot, slack, "ro")
    finally:
        bot.stop()
        print(bot.stderr[-20000:])
    [logged] = [line for line in bot.stderr.splitlines() if OUTAGE_LOG in line]
    assert "attempt to write a readonly database" in logged  # the reason, once
    assert "Failed to run listener function" not in bot.stderr


@pytest.mark.postgres
def test_socket_mode_while_postgres_is_down(
    postgres_url: str, postgres_server: str, slack: FakeSlack
) -> None:
    """No signature, so no replay check: the listeners meet the outage themselves."""
    with FakeSlackSocket(slack, app_token=APP_TOKEN) as sock:
        assert slack.token is not None
        bot = BotProcess(postgres_url, sock.url, slack.token, SLACK_APP_TOKEN=APP_TOKEN)
        bot.env.pop("SLACK_SIGNING_SECRET")
        bot.start()
        database = PostgresOutage(postgres_server, postgres_url)
        try:
            sock.wait_for_connection()
            database.go_away()
            # Acknowledged first ("Declaring…"), then the database fails: told in a follow-up.
            declare = sock.slash_command("declare Down", response_url=slack.response_url("d"))
            ack = sock.wait_for_ack(declare, timeout=SLACK_DEADLINE)
            assert ack.payload is not None and ack.payload["text"] == "Declaring *Down*…"
            told = slack.wait_for(lambda: slack.responses("d"), timeout=10)
            assert told[0]["text"] == UNREACHABLE
            # Not acknowledged before the database fails: told in the acknowledgement.
            for _ in range(5):
                ack = sock.wait_for_ack(sock.slash_command("list"), timeout=SLACK_DEADLINE)
                assert ack.payload == {"response_type": "ephemeral", "text": UNREACHABLE}

            database.come_back()
            ack = sock.wait_for_ack(sock.slash_command("list"), timeout=10)
            assert ack.payload == {"response_type": "ephemeral", "text": "No open incidents."}
        finally:
            bot.stop()
            database.admin.dispose()
            print(bot.stderr[-20000:])
    assert bot.stderr.count(OUTAGE_LOG) == 1
    assert bot.stderr.count(BACK_LOG) == 1
    assert "Failed to run listener function" not in bot.stderr
