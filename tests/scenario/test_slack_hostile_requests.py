"""POST /slack/events against hostile and replayed requests, over real HTTP.

The bot runs as a real `nexus-bot serve` process; Slack's Web API is the local
fake. Requests are signed as Slack signs them (tests/support/bot_process.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa

from bot.store.db import make_engine
from bot.store.models import WebhookDelivery
from tests.fakes.slack import FakeSlack
from tests.support.bot_process import CHANNEL, SIGNING_SECRET, BotProcess

BIG = "1" * 4301  # one digit past Python's int-string conversion limit


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def start(database_url: str, slack: FakeSlack) -> BotProcess:
    return BotProcess(database_url, slack.url, slack.token or "xoxb-test").start()


@pytest.fixture
def bot(sqlite_url: str, slack: FakeSlack) -> Iterator[BotProcess]:
    """On SQLite only: these requests are refused before the database is used."""
    process = start(sqlite_url, slack)
    try:
        yield process
    finally:
        process.stop()
        print(process.stderr[-20000:])  # shown by pytest when the test fails


def post(bot: BotProcess, body: bytes, headers: dict[str, str | bytes]) -> httpx.Response:
    """A request with exactly these headers (bytes for ones httpx would not encode)."""
    return httpx.post(
        f"{bot.url}/slack/events",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded", **headers},
        timeout=10,
    )


def signature(body: bytes, timestamp: str) -> str:
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()


def assert_no_traceback(bot: BotProcess) -> None:
    bot.stop()
    assert "Traceback" not in bot.stderr
    assert "Exception in ASGI application" not in bot.stderr


# -- item 5: unauthenticated requests that raised inside the signature check --------

NON_ASCII_SIGNATURES = [
    ("v0=" + "é" * 64).encode(),  # UTF-8 bytes, read by the server as Latin-1: non-ASCII
    "v0=ü".encode(),
    b"v0=" + b"0" * 63 + b"\xff",
]
# "²" (b"\xb2" read as Latin-1) passes str.isdigit() and int() refuses it.
BAD_TIMESTAMPS = [b"\xb2", b"1\xb2", "²".encode(), b"\xb9\xb2\xb3", b"+1700000000", b"1" * 40]


def test_hostile_unsigned_requests_are_refused_without_a_traceback(bot: BotProcess) -> None:
    now = str(int(time.time()))
    refused: list[tuple[str, int, str]] = []

    def send(case: str, body: bytes, headers: dict[str, str | bytes]) -> None:
        answer = post(bot, body, headers)
        refused.append((case, answer.status_code, answer.json().get("error", "")))

    # (a) a body that is not UTF-8, with a junk signature: never decoded.
    send(
        "non-utf8 body",
        b"command=/incident&text=\xff\xfe\xfa",
        {"x-slack-request-timestamp": now, "x-slack-signature": "v0=junk"},
    )
    # (b) a signature that is not ASCII.
    body = urlencode({"command": "/incident", "text": "help"}).encode()
    for n, bad in enumerate(NON_ASCII_SIGNATURES):
        send(f"signature {n}", body, {"x-slack-request-timestamp": now, "x-slack-signature": bad})
    # (c) a timestamp that is not ASCII digits.
    for n, ts in enumerate(BAD_TIMESTAMPS):
        good = signature(body, now)
        send(f"timestamp {n}", body, {"x-slack-request-timestamp": ts, "x-slack-signature": good})

    invalid = (401, "invalid signature")
    not_a_number = (401, "X-Slack-Request-Timestamp is not a number")
    assert refused == [
        ("non-utf8 body", *invalid),
        *[(f"signature {n}", *invalid) for n in range(len(NON_ASCII_SIGNATURES))],
        *[(f"timestamp {n}", *not_a_number) for n in range(len(BAD_TIMESTAMPS))],
    ]
    # The same body correctly signed is a Slack request Bolt could not read: 400.
    bad_body = b"command=/incident&text=\xff\xfe\xfa"
    signed = post(
        bot,
        bad_body,
        {"x-slack-request-timestamp": now, "x-slack-signature": signature(bad_body, now)},
    )
    assert (signed.status_code, signed.json()) == (400, {"error": "body is not UTF-8"})
    assert bot.command("help").status_code == 200  # and the bot is fine
    assert_no_traceback(bot)


# -- item 6: numbers Python will not convert ----------------------------------------


def test_numbers_of_4301_digits_are_400_or_ignored_without_a_traceback(
    bot: BotProcess, slack: FakeSlack
) -> None:
    payload = '{"type": "block_actions", "n": ' + BIG + "}"
    in_form = bot.slack({"payload": payload})
    assert in_form.status_code == 400, in_form.text
    assert in_form.json() == {"error": "payload field holds a number too long to read"}

    event = b'{"type": "event_callback", "event_id": "Ev1", "n": ' + BIG.encode() + b"}"
    in_json = bot.slack(raw=event, content_type="application/json")
    assert in_json.status_code == 400, in_json.text
    assert in_json.json() == {"error": "body holds a number too long to read"}

    # The slash command's fields stay strings: nothing converts them.
    command = bot.command(f"status {BIG}")
    assert command.status_code == 200
    assert "too long" in command.json()["text"]
    # A button value is JSON inside the payload's JSON: read by our listener, after ack.
    clicked = bot.click(
        "incident.acknowledge", '{"i": ' + BIG + "}", response_url=slack.response_url("big")
    )
    assert clicked.status_code == 200
    time.sleep(1)  # the listener runs after the acknowledgement
    assert slack.responses("big") == []  # not attached to an incident: nothing to say
    assert_no_traceback(bot)


# -- item 8: a signed request replayed within its 5-minute window --------------------


def declare_form(response_url: str) -> dict[str, str]:
    return {
        "command": "/incident",
        "text": "declare Replayed SSOT outage",
        "user_id": "U0ALICE",
        "user_name": "u0alice",
        "channel_id": CHANNEL,
        "team_id": "T0FAKE000",
        "response_url": response_url,
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
    }


def test_replayed_declare_opens_one_incident(database_url: str, slack: FakeSlack) -> None:
    bot = start(database_url, slack)
    try:
        form = declare_form(slack.response_url("declare"))
        ts = int(time.time())
        first = bot.slack(form, timestamp=ts)
        assert first.status_code == 200 and "Declaring" in first.json()["text"]
        slack.wait_for(lambda: slack.responses("declare"), timeout=10)

        replays = [bot.slack(form, timestamp=ts) for _ in range(3)]  # same bytes, same headers
        assert [(r.status_code, r.content) for r in replays] == [(200, b"")] * 3

        # A fresh signature of the same body is a new request (a user typing it again).
        again = bot.slack(form, timestamp=ts + 1)
        assert again.status_code == 200
        slack.wait_for(lambda: len(slack.responses("declare")) == 2, timeout=10)
        time.sleep(0.5)
        assert bot.scalar("SELECT count(*) FROM incidents") == 2
        assert [r["text"] for r in slack.responses("declare")] == [
            "Opened incident #1: Replayed SSOT outage",
            "Opened incident #2: Replayed SSOT outage",
        ]
        remembered = bot.scalar(
            "SELECT count(*) FROM webhook_deliveries WHERE source = 'slack-request'"
        )
        assert remembered == 2
    finally:
        bot.stop()
        print(bot.stderr[-20000:])
    assert bot.stderr.count("slack request replayed") == 3
    assert "Traceback" not in bot.stderr


def test_replay_is_refused_by_another_replica(database_url: str, slack: FakeSlack) -> None:
    one, two = start(database_url, slack), start(database_url, slack)
    try:
        form = declare_form(slack.response_url("declare"))
        ts = int(time.time())
        assert one.slack(form, timestamp=ts).status_code == 200
        replayed = two.slack(form, timestamp=ts)
        assert (replayed.status_code, replayed.content) == (200, b"")
        slack.wait_for(lambda: slack.responses("declare"), timeout=10)
        time.sleep(0.5)
        assert one.scalar("SELECT count(*) FROM incidents") == 1
    finally:
        one.stop()
        two.stop()
    assert "slack request replayed" in two.stderr


def test_remembered_requests_are_pruned_after_their_window(
    database_url: str, slack: FakeSlack
) -> None:
    bot = start(database_url, slack)
    try:
        now = datetime.now(UTC)
        engine = make_engine(database_url)
        try:
            with engine.begin() as conn:
                for source, age in [("slack-request", 20), ("slack-request", 5), ("pd", 60)]:
                    conn.execute(
                        sa.insert(WebhookDelivery.__table__).values(
                            source=source,
                            delivery_id=f"old-{age}",
                            received_at=now - timedelta(minutes=age),
                        )
                    )
        finally:
            engine.dispose()
        assert bot.command("help").status_code == 200  # the first request prunes
        engine = make_engine(database_url)
        try:
            with engine.connect() as conn:
                kept = sorted(
                    conn.execute(sa.text("SELECT delivery_id FROM webhook_deliveries")).scalars()
                )
        finally:
            engine.dispose()
        # 20 minutes old is past any window; the help request itself is remembered.
        assert len(kept) == 3 and kept[1:] == ["old-5", "old-60"], kept
        assert ":v0=" in kept[0]
    finally:
        bot.stop()


def test_events_api_retry_is_not_a_replay_but_still_deduplicated(
    sqlite_url: str, slack: FakeSlack
) -> None:
    bot = start(sqlite_url, slack)
    try:
        event = {
            "token": "x",
            "team_id": "T0FAKE000",
            "api_app_id": "A0NEXUS",
            "type": "event_callback",
            "event_id": "Ev0MENTIONR",
            "event_time": int(time.time()),
            "event": {
                "type": "app_mention",
                "user": "U0ALICE",
                "text": "<@U0FAKEBOT> list",
                "ts": "1700000999.000100",
                "channel": CHANNEL,
                "event_ts": "1700000999.000100",
            },
        }
        body = json.dumps(event).encode()
        ts = int(time.time())
        assert bot.slack(raw=body, content_type="application/json", timestamp=ts).status_code == 200
        slack.wait_for(lambda: slack.ephemeral(), timeout=10)
        # Slack re-signs a retry with a new timestamp: not a replay, but the same event.
        retried = bot.slack(
            raw=body,
            content_type="application/json",
            timestamp=ts + 60,
            headers={"x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"},
        )
        assert retried.status_code == 200
        time.sleep(1)
        assert len(slack.ephemeral()) == 1
    finally:
        bot.stop()
    assert "slack request replayed" not in bot.stderr


# -- found on the way: Bolt re-guessing what a form is --------------------------------


def test_slash_command_mentioning_payload_is_still_a_command(
    bot: BotProcess, slack: FakeSlack
) -> None:
    """Bolt took any form containing "payload" for an interaction (404 before)."""
    declared = bot.command("declare payload API drops orders", response_url=slack.response_url("p"))
    assert declared.status_code == 200, declared.text
    assert declared.json()["text"] == "Declaring *payload API drops orders*…"
    told = slack.wait_for(lambda: slack.responses("p"), timeout=10)
    assert told[0]["text"] == "Opened incident #1: payload API drops orders"
    from_channel = bot.command("list", channel_name="payload-team")
    assert "payload API drops orders" in from_channel.json()["text"]
    # A form whose first field starts with "{" is not JSON either (500 before).
    braces = bot.slack({"{": "x", "command": "/incident", "text": "help", "user_id": "U0ALICE"})
    assert braces.status_code == 200 and "/incident declare" in braces.json()["text"]
    assert_no_traceback(bot)
