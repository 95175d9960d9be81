"""Socket Mode end to end, over real sockets.

`nexus-bot serve` runs as a process with SLACK_APP_TOKEN and no signing
secret. SLACK_API_URL points at the Socket Mode fake (tests/fakes/slack_socket.py),
which issues the WebSocket URL, pushes envelopes down the WebSocket as Slack does
and forwards every Web API call to the usual fake Slack (tests/fakes/slack.py).
Webhooks still come in over HTTP.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.slack.commands import HELP
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_socket import FakeSlackSocket
from tests.support.bot_process import CHANNEL, BotProcess

DATA = Path(__file__).resolve().parents[1] / "data"
APP_TOKEN = "xapp-1-A0NEXUS-4242424242-socketmodetestapptoken0123456789"
ACK_DEADLINE = 3.0  # seconds Slack waits for an envelope's acknowledgement


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def sock(slack: FakeSlack) -> Iterator[FakeSlackSocket]:
    with FakeSlackSocket(slack, app_token=APP_TOKEN) as fake:
        yield fake


@pytest.fixture
def bot(sqlite_url: str, slack: FakeSlack, sock: FakeSlackSocket) -> Iterator[BotProcess]:
    assert slack.token is not None
    process = BotProcess(sqlite_url, sock.url, slack.token, SLACK_APP_TOKEN=APP_TOKEN)
    process.env.pop("SLACK_SIGNING_SECRET")  # Socket Mode only
    process.start()
    try:
        yield process
    finally:
        process.stop()
        print(process.stderr[-20000:])  # shown by pytest when the test fails
    assert APP_TOKEN not in process.stderr  # the log redacts the app token too


def root_blocks(slack: FakeSlack) -> str:
    roots = slack.roots(CHANNEL)
    assert len(roots) == 1
    return json.dumps(roots[0].blocks, ensure_ascii=False)


def test_connects_with_the_app_token_and_keeps_the_socket_alive(
    bot: BotProcess, slack: FakeSlack, sock: FakeSlackSocket
) -> None:
    # `serve` is healthy only once the socket is up: no wait needed.
    conn = sock.wait_for_connection(timeout=0.5)
    [opened] = sock.opens()
    assert opened.ok and opened.token == APP_TOKEN
    assert opened.authorization == f"Bearer {APP_TOKEN}"
    assert conn.hello is not None and conn.hello["type"] == "hello" and conn.open
    assert sock.refused_tickets == []
    # The bot token stays on the Web API; the app token never reaches it.
    assert all(call.token != APP_TOKEN for call in slack.calls())

    # The client pings right after connecting (ping/pong is how it detects a stale link) …
    sock.wait_for(lambda: conn.pings)
    assert conn.pings[0].startswith(b"sdk-ping-pong:")
    # … and answers Slack's pings.
    sock.ping(b"are-you-there")
    sock.wait_for(lambda: b"are-you-there" in conn.pongs)


def test_commands_buttons_and_events_over_the_socket(
    bot: BotProcess, slack: FakeSlack, sock: FakeSlackSocket
) -> None:
    sock.wait_for_connection()

    # /incident help: answered in the acknowledgement itself.
    help_ack = sock.wait_for_ack(sock.slash_command("help"))
    assert help_ack.payload == {"text": HELP, "response_type": "ephemeral"}
    assert help_ack.latency is not None and help_ack.latency < ACK_DEADLINE

    # /incident declare: acknowledged at once, then the thread, then the answer via response_url.
    declare_id = sock.slash_command(
        "declare Drill --playbook configuration-drift",
        response_url=slack.response_url("declare"),
    )
    declare_ack = sock.wait_for_ack(declare_id)
    assert declare_ack.payload is not None
    assert declare_ack.payload["text"] == "Declaring *Drill*…"
    assert declare_ack.latency is not None and declare_ack.latency < ACK_DEADLINE
    [answer] = slack.wait_for(lambda: slack.responses("declare"), timeout=10)
    assert answer["text"] == "Opened incident #1: Drill"
    root = slack.wait_for(lambda: slack.roots(CHANNEL), timeout=10)[0]
    assert "Drill" in root_blocks(slack) and "configuration-drift" in root_blocks(slack)
    assert "acknowledged" not in root_blocks(slack)
    slack.wait_for(lambda: slack.thread(CHANNEL, root.ts), timeout=10)

    # The Acknowledge button on the root: an empty ack, then the root is edited.
    click_id = sock.block_action(
        "incident.acknowledge",
        json.dumps({"i": 1}),
        user="U0BOB",
        message_ts=root.ts,
        response_url=slack.response_url("click"),
    )
    click_ack = sock.wait_for_ack(click_id)
    assert click_ack.message == {"envelope_id": click_id}
    slack.wait_for(lambda: "acknowledged" in root_blocks(slack), timeout=10)
    assert slack.message(CHANNEL, root.ts).edit_count >= 1  # type: ignore[union-attr]
    assert slack.responses("click") == []  # it changed something: nothing to tell

    # An @mention in the thread (Events API): acknowledged, answered ephemerally.
    mention_id = sock.event(
        {
            "type": "app_mention",
            "user": "U0ALICE",
            "text": f"<@{slack.bot_user_id}> status",
            "ts": "1700000999.000100",
            "channel": CHANNEL,
            "thread_ts": root.ts,
            "event_ts": "1700000999.000100",
        }
    )
    assert sock.wait_for_ack(mention_id).message == {"envelope_id": mention_id}
    [ephemeral] = slack.wait_for(lambda: slack.ephemeral(), timeout=10)
    assert ephemeral["user"] == "U0ALICE" and ephemeral["thread_ts"] == root.ts
    assert "#1 Drill" in ephemeral["text"] and "acknowledged by U0BOB" in ephemeral["text"]

    # Every envelope was acknowledged once, on the one connection, and nothing reconnected.
    acks = sock.acks()
    assert sorted(a.envelope_id for a in acks) == sorted(e.envelope_id for e in sock.envelopes())
    assert {a.connection for a in acks} == {1}
    assert len(sock.connections()) == 1 and len(sock.opens()) == 1


def test_http_serves_webhooks_but_not_slack_events(
    bot: BotProcess, slack: FakeSlack, sock: FakeSlackSocket
) -> None:
    # Without a signing secret the bot cannot verify HTTP requests from Slack: 503, not 500.
    answer = bot.command("help")
    assert answer.status_code == 503
    assert "SLACK_SIGNING_SECRET" in answer.json()["error"]

    event: dict[str, Any] = json.loads((DATA / "pagerduty-incident-triggered.json").read_text())
    accepted = bot.pagerduty(event, webhook_id="wh-socket-1")
    assert accepted.status_code == 202, accepted.text
    slack.wait_for(lambda: slack.roots(CHANNEL), timeout=10)
    assert "Q1NEXUS7SCHEMA" in root_blocks(slack)
    # The socket is untouched by HTTP traffic.
    assert len(sock.connections()) == 1 and sock.current is not None


def test_reconnects_when_slack_asks_and_keeps_serving(
    bot: BotProcess, sock: FakeSlackSocket
) -> None:
    first = sock.wait_for_connection()
    sock.disconnect("refresh_requested")
    second = sock.wait_for_connection(2, timeout=10)
    # A fresh URL from apps.connections.open, never the old (single-use) ticket.
    assert [o.ok for o in sock.opens()] == [True, True]
    assert second.ticket != first.ticket and sock.refused_tickets == []
    sock.wait_for(lambda: first.closed_at is not None)

    ack = sock.wait_for_ack(sock.slash_command("help"))
    assert ack.connection == 2
    assert ack.payload is not None and ack.payload["text"] == HELP
    time.sleep(0.2)
    assert len(sock.connections()) == 2  # settled: no reconnect loop
