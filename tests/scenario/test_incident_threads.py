"""End to end over real HTTP: signed webhooks and Slack requests in, Slack threads out.

The bot runs as a real `nexus-bot serve` process; Slack is the local fake
(tests/fakes/slack.py), reached through SLACK_API_URL.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.slack import FakeSlack
from tests.support.bot_process import CHANNEL, BotProcess

DATA = Path(__file__).resolve().parents[1] / "data"


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def bot(database_url: str, slack: FakeSlack) -> Iterator[BotProcess]:
    process = BotProcess(database_url, slack.url, slack.token or "xoxb-test").start()
    try:
        yield process
    finally:
        process.stop()
        print(process.stderr[-20000:])  # shown by pytest when the test fails


def thread_of(slack: FakeSlack, root_ts: str) -> list[Any]:
    return slack.thread(CHANNEL, root_ts)


def root_text(slack: FakeSlack) -> str:
    roots = slack.roots(CHANNEL)
    assert len(roots) == 1
    return json.dumps(roots[0].blocks, ensure_ascii=False)


def test_triggered_then_acknowledged_is_one_thread(bot: BotProcess, slack: FakeSlack) -> None:
    answer = bot.pagerduty(load("pagerduty-incident-triggered.json"), webhook_id="wh-1")
    assert answer.status_code == 202, answer.text
    roots = slack.wait_for(lambda: slack.roots(CHANNEL))
    root = roots[0]
    replies = slack.wait_for(
        lambda: len(thread_of(slack, root.ts)) >= 2 and thread_of(slack, root.ts)
    )
    header = json.dumps(root.blocks)
    assert "Schema mismatch: orders-api rejects SSOT anchor v37" in header
    assert "schema-mismatch" in header and "critical" in header
    assert "nexus.pagerduty.com/incidents/Q1NEXUS7SCHEMA" in header
    playbook = json.dumps([r.blocks for r in replies], ensure_ascii=False)
    assert "remediation.request.revert-commit" in playbook  # one button per runnable step
    assert "Immediate response" in playbook and "0–5 min" in playbook
    # The database rollback is a button too (a Job from its CronJob), not run by itself.
    assert "remediation.request.database-rollback" in playbook

    acked = bot.pagerduty(load("pagerduty-incident-acknowledged.json"), webhook_id="wh-2")
    assert acked.status_code == 202
    slack.wait_for(lambda: "acknowledged" in root_text(slack), timeout=10)
    slack.wait_for(
        lambda: any(
            "Acknowledged in PagerDuty" in (m.text or "") for m in thread_of(slack, root.ts)
        )
    )
    assert len(slack.roots(CHANNEL)) == 1


def test_redelivered_webhook_has_no_second_effect(bot: BotProcess, slack: FakeSlack) -> None:
    payload = load("pagerduty-incident-triggered.json")
    assert bot.pagerduty(payload, webhook_id="wh-same").status_code == 202
    # Root, playbook intro, playbook, and "Level 1 — Team lead".
    slack.wait_for(lambda: len(slack.messages(CHANNEL)) >= 4)
    again = bot.pagerduty(payload, webhook_id="wh-same")
    assert again.status_code == 202 and again.json()["duplicate"] is True
    # A redelivery with a new id (PagerDuty does that too) is still the same incident.
    assert bot.pagerduty(payload, webhook_id="wh-other").status_code == 202
    time.sleep(1.5)
    assert len(slack.roots(CHANNEL)) == 1
    assert len(slack.calls("chat.postMessage", ok=True)) == 4


def test_resolved_for_an_unknown_incident_is_recorded_not_posted(
    bot: BotProcess, slack: FakeSlack
) -> None:
    answer = bot.pagerduty(load("pagerduty-incident-resolved.json"), webhook_id="wh-r")
    assert answer.status_code == 202
    time.sleep(1)
    assert slack.messages(CHANNEL) == []


def test_acknowledged_for_an_unknown_incident_opens_it(bot: BotProcess, slack: FakeSlack) -> None:
    assert bot.pagerduty(load("pagerduty-incident-acknowledged.json")).status_code == 202
    slack.wait_for(lambda: slack.roots(CHANNEL) and "acknowledged" in root_text(slack), timeout=10)


@pytest.mark.parametrize(
    ("body", "signature", "status", "reason"),
    [
        (b'{"event": {}}', "v1=" + "0" * 64, 401, "X-PagerDuty-Signature"),
        (b'{"event": {}}', "", 401, "X-PagerDuty-Signature"),
        (b"{not json", None, 400, "malformed JSON"),
        (
            b'{"event": {"event_type": "incident.triggered", "resource_type": "incident"}}',
            None,
            400,
            "data",
        ),
        (b"[]", None, 400, "object"),
    ],
)
def test_pagerduty_bad_input(
    bot: BotProcess, slack: FakeSlack, body: bytes, signature: str | None, status: int, reason: str
) -> None:
    answer = bot.pagerduty(body, signature=signature)
    assert answer.status_code == status
    assert reason in answer.json()["error"]
    assert slack.messages(CHANNEL) == []


def test_pagerduty_oversized_body_is_413(bot: BotProcess) -> None:
    answer = bot.pagerduty(b"{" + b" " * (1024 * 1024 + 10) + b"}")
    assert answer.status_code == 413


def test_unhandled_pagerduty_event_type_is_accepted(bot: BotProcess, slack: FakeSlack) -> None:
    event = load("pagerduty-incident-triggered.json")
    event["event"]["event_type"] = "incident.workflow.started"
    answer = bot.pagerduty(event)
    assert answer.status_code == 202
    assert "not handled" in answer.json()["note"]


def test_alertmanager_group_of_50_is_one_thread_and_resolves(
    bot: BotProcess, slack: FakeSlack
) -> None:
    batch = load("alertmanager-frenly-ai.json")
    template = batch["alerts"][0]
    batch["alerts"] = []
    for n in range(50):
        alert = copy.deepcopy(template)
        alert["fingerprint"] = f"fp{n:04d}"
        alert["labels"]["instance"] = f"frenly-{n}"
        batch["alerts"].append(alert)
    answer = bot.alertmanager(batch)
    assert answer.status_code == 202, answer.text
    assert answer.json()["alerts"] == 50
    bot.wait_applied()
    assert bot.scalar("SELECT count(*) FROM alerts") == 50
    assert bot.alertmanager(batch).status_code == 202  # Alertmanager repeats the group
    bot.wait_applied()
    assert bot.scalar("SELECT count(*) FROM alerts") == 50  # deduplicated, not stored twice
    assert bot.scalar("SELECT count(*) FROM inbox") == 0  # applied rows leave the inbox
    root = slack.wait_for(lambda: slack.roots(CHANNEL))[0]
    slack.wait_for(lambda: "50 firing" in root_text(slack), timeout=10)
    assert "frenly-ai-dangerous-edit" in root_text(slack)

    for alert in batch["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = "2026-11-20T10:30:00Z"
    batch["status"] = "resolved"
    assert bot.alertmanager(batch).status_code == 202
    slack.wait_for(
        lambda: "50 resolved" in root_text(slack) and "resolved" in root_text(slack), timeout=10
    )
    slack.wait_for(
        lambda: any("All alerts resolved" in (m.text or "") for m in thread_of(slack, root.ts))
    )
    assert len(slack.roots(CHANNEL)) == 1


@pytest.mark.parametrize(
    ("token", "body", "status"),
    [
        (None, b"{}", 401),
        ("wrong-token", b"{}", 401),
        ("am-token-for-tests-0123456789", b"{oops", 400),
        ("am-token-for-tests-0123456789", b'{"version": "4", "alerts": "nope"}', 400),
        ("am-token-for-tests-0123456789", b'{"version": "3", "alerts": []}', 400),
    ],
)
def test_alertmanager_bad_input(
    bot: BotProcess, token: str | None, body: bytes, status: int
) -> None:
    answer = bot.alertmanager(body, token=token)
    assert answer.status_code == status
    assert answer.json()["error"]


def test_slack_signature_checks(bot: BotProcess) -> None:
    assert bot.command("help", response_url="").status_code == 200
    assert bot.slack({"command": "/incident", "text": "help"}, secret="wrong").status_code == 401
    stale = bot.slack({"command": "/incident", "text": "help"}, timestamp=int(time.time()) - 600)
    assert stale.status_code == 401 and "stale" in stale.json()["error"]
    bad_payload = bot.slack({"payload": "{not json"})
    assert bad_payload.status_code == 400 and "payload" in bad_payload.json()["error"]
    neither = bot.slack({"foo": "bar"})
    assert neither.status_code == 400
    huge = bot.slack(raw=b"text=" + b"a" * (1024 * 1024 + 1))
    assert huge.status_code == 413


def test_slash_commands_outside_a_thread(bot: BotProcess, slack: FakeSlack) -> None:
    help_text = bot.command("").json()["text"]
    assert "/incident declare" in help_text
    unknown = bot.command("frobnicate now")
    assert unknown.status_code == 200 and "unknown command" in unknown.json()["text"]
    assert "No open incidents" in bot.command("list").json()["text"]
    assert "Which incident" in bot.command("ack").json()["text"]
    assert "no incident #99" in bot.command("status 99").json()["text"]
    assert "emergency rollback" in bot.command("playbook frenly-ai-dangerous-edit").json()["text"]

    declared = bot.command(
        "declare Frenly AI rewrote anchors --playbook frenly-ai-dangerous-edit",
        response_url=slack.response_url("declare-1"),
    )
    assert declared.status_code == 200
    responses = slack.wait_for(lambda: slack.responses("declare-1"), timeout=10)
    assert "Opened incident #1" in responses[0]["text"]
    slack.wait_for(lambda: slack.roots(CHANNEL), timeout=10)
    assert "frenly-ai-dangerous-edit" in root_text(slack)

    assert "#1" in bot.command("list").json()["text"]
    assert "triggered" in bot.command("status 1").json()["text"]
    assert "now acknowledged" in bot.command("ack 1", user="U0BOB").json()["text"]
    assert "already acknowledged" in bot.command("ack 1").json()["text"]
    assert "level 2" in bot.command("escalate 1").json()["text"]
    timeline = bot.command("timeline #1").json()["text"]
    # The timeline reads the incident's timeline events, in order, with who did what.
    assert "— opened (info, playbook `frenly-ai-dangerous-edit`)" in timeline
    assert timeline.index("— opened") < timeline.index("<@U0BOB> — acknowledged")
    assert "level 2 — Engineering manager: escalated by hand" in timeline
    assert "now resolved" in bot.command("resolve 1").json()["text"]
    slack.wait_for(lambda: ":white_check_mark: resolved" in root_text(slack), timeout=10)


def test_mention_in_an_incident_thread_acts_on_it(bot: BotProcess, slack: FakeSlack) -> None:
    bot.pagerduty(load("pagerduty-incident-triggered.json"))
    root = slack.wait_for(lambda: slack.roots(CHANNEL))[0]
    event = {
        "token": "x",
        "team_id": "T0FAKE000",
        "api_app_id": "A0NEXUS",
        "type": "event_callback",
        "event_id": "Ev0MENTION1",
        "event_time": int(time.time()),
        "event": {
            "type": "app_mention",
            "user": "U0ALICE",
            "text": "<@U0FAKEBOT> ack",
            "ts": "1700000999.000100",
            "channel": CHANNEL,
            "thread_ts": root.ts,
            "event_ts": "1700000999.000100",
        },
    }
    assert bot.slack(json_body=event).status_code == 200
    slack.wait_for(lambda: "acknowledged" in root_text(slack), timeout=10)
    ephemeral = slack.wait_for(lambda: slack.ephemeral(), timeout=10)
    assert "now acknowledged" in ephemeral[0]["text"]
    # Slack retries the event (X-Slack-Retry-Num): no second effect, no second answer.
    retried = bot.slack(
        json_body=event, headers={"x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"}
    )
    assert retried.status_code == 200
    time.sleep(1)
    assert len(slack.ephemeral()) == 1


def mention(channel: str, thread_ts: str, text: str, event_id: str) -> dict[str, Any]:
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
            "text": text,
            "ts": f"{time.time():.6f}",
            "channel": channel,
            "thread_ts": thread_ts,
            "event_ts": f"{time.time():.6f}",
        },
    }


def test_the_communication_commands_work_as_mentions_in_the_thread(
    bot: BotProcess, slack: FakeSlack
) -> None:
    """Slash commands cannot run in threads: `@nexus role|update|note|timeline` can,
    with the same parser and the same answers, the incident taken from the thread."""
    bot.alertmanager(load("alertmanager-frenly-ai.json"))
    root = slack.wait_for(lambda: slack.roots(CHANNEL))[0]
    said = [
        ("<@U0FAKEBOT> role comms <@U0NEWPM|nina>", "Role comms reassigned."),
        ('<@U0FAKEBOT|nexus> update identified "Bad anchor v37 reverted"', "update posted"),
        ("<@U0FAKEBOT> note checked the <@U0BOB> dashboards", "Note added."),
        ("<@U0FAKEBOT> update sideways nothing", "unknown status"),
        ("<@U0FAKEBOT> timeline", "Timeline of #1"),
    ]
    for n, (text, answer) in enumerate(said, 1):
        assert (
            bot.slack(json_body=mention(CHANNEL, root.ts, text, f"Ev0COMMS{n}")).status_code == 200
        )
        slack.wait_for(lambda n=n: len(slack.ephemeral()) >= n, timeout=15)
        assert answer in slack.ephemeral()[n - 1]["text"], slack.ephemeral()[n - 1]
    timeline = slack.ephemeral()[-1]["text"]
    assert "Communications → <@U0NEWPM>" in timeline
    assert "public update (identified): Bad anchor v37 reverted" in timeline
    assert "note: checked the" in timeline
    for needle in ("made <@U0NEWPM> *Communications*", "Public update — Identified"):
        slack.wait_for(
            lambda needle=needle: any(needle in (m.text or "") for m in thread_of(slack, root.ts)),
            timeout=15,
        )


def test_buttons_acknowledge_once_and_request_remediation(
    bot: BotProcess, slack: FakeSlack
) -> None:
    bot.alertmanager(load("alertmanager-frenly-ai.json"))
    root = slack.wait_for(lambda: slack.roots(CHANNEL))[0]
    value = json.dumps({"i": 1})
    first = bot.click(
        "incident.acknowledge", value, user="U0ALICE", response_url=slack.response_url("a1")
    )
    second = bot.click(
        "incident.acknowledge", value, user="U0BOB", response_url=slack.response_url("a2")
    )
    assert first.status_code == second.status_code == 200
    slack.wait_for(lambda: slack.responses("a2"), timeout=10)
    assert "already acknowledged" in slack.responses("a2")[0]["text"]

    def acks() -> list[Any]:
        return [m for m in thread_of(slack, root.ts) if "Acknowledged by" in (m.text or "")]

    slack.wait_for(acks, timeout=10)
    time.sleep(1.5)
    assert len(acks()) == 1

    # Without Kubernetes credentials the request is recorded, refused with the reason,
    # and said in the thread (the approval flow itself: test_remediation_approval.py).
    request = json.dumps({"p": "frenly-ai-dangerous-edit", "s": "scale-to-zero", "i": 1})
    bot.click(
        "remediation.request.scale-to-zero",
        request,
        user="U0ALICE",
        response_url=slack.response_url("r1"),
    )
    answer = slack.wait_for(lambda: slack.responses("r1"), timeout=10)[0]
    assert "cannot run `k8s.scale`" in answer["text"]
    slack.wait_for(
        lambda: any("Remediation #1" in (m.text or "") for m in thread_of(slack, root.ts)),
        timeout=10,
    )
    assert (
        "— remediation refused: the bot cannot run `k8s.scale`"
        in (bot.command("timeline 1").json()["text"])
    )


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: text.encode("utf-16"),
        lambda text: text.encode("utf-32-le"),
        lambda text: b"\xef\xbb\xbf" + text.encode("utf-8"),
    ],
    ids=["utf-16", "utf-32", "utf-8-bom"],
)
def test_json_in_other_unicode_encodings_is_accepted_and_applied(
    bot: BotProcess, slack: FakeSlack, encode: Any
) -> None:
    # json.loads takes these; the inbox must store them so its worker (and
    # PostgreSQL, which refuses NUL in text) can read them back.
    batch = encode(json.dumps(load("alertmanager-frenly-ai.json")))
    trigger = encode(json.dumps(load("pagerduty-incident-triggered.json")))
    assert bot.alertmanager(batch).status_code == 202
    assert bot.pagerduty(trigger).status_code == 202
    bot.wait_applied()
    assert bot.scalar("SELECT count(*) FROM inbox") == 0  # applied, none failed
    assert bot.scalar("SELECT count(*) FROM incidents") == 2
    slack.wait_for(lambda: len(slack.roots(CHANNEL)) == 2, timeout=10)
