"""`/incident drill …` and `@nexus drill …` against a running bot and the Slack fake.

Who may start a drill: approvers (NEXUS_APPROVERS), drills.participants and
the Incident Commander; anyone else is refused and nothing is written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.slack import FakeSlack
from tests.support.bot_process import CHANNEL, REPO_ROOT, BotProcess

APPROVER = "U0BOB"
PARTICIPANT = "U0CAROL"
STRANGER = "U0MALLORY"
FIVE = ["schema-mismatch", "build-failure", "ai-malfunction", "data-loss", "performance-issues"]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def bot(database_url: str, slack: FakeSlack, tmp_path: Path) -> Iterator[BotProcess]:
    config = yaml.safe_load((REPO_ROOT / "config" / "nexus.yaml").read_text())
    config["drills"]["participants"] = [PARTICIPANT]
    path = tmp_path / "nexus.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    process = BotProcess(
        database_url,
        slack.url,
        slack.token or "xoxb-test",
        NEXUS_CONFIG=str(path),
        NEXUS_APPROVERS=APPROVER,
    ).start()
    try:
        yield process
    finally:
        process.stop()
        print(process.stderr[-20000:])  # shown by pytest when the test fails


def ask(bot: BotProcess, slack: FakeSlack, text: str, user: str, response_id: str) -> str:
    """A slash command whose answer comes later through its response_url."""
    answer = bot.command(text, user=user, response_url=slack.response_url(response_id))
    assert answer.status_code == 200, answer.text
    assert "Starting the drill" in answer.json()["text"]
    return str(slack.wait_for(lambda: slack.responses(response_id), timeout=20)[0]["text"])


def drill_runs(bot: BotProcess) -> int:
    return int(bot.scalar("SELECT count(*) FROM drill_runs"))


def mention(text: str, user: str, event_id: str) -> dict[str, Any]:
    now = f"{time.time():.6f}"
    return {
        "token": "x",
        "team_id": "T0FAKE000",
        "api_app_id": "A0NEXUS",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": {
            "type": "app_mention",
            "user": user,
            "text": text,
            "ts": now,
            "channel": CHANNEL,
            "event_ts": now,
        },
    }


def test_an_approver_starts_a_drill_and_its_thread_opens(bot: BotProcess, slack: FakeSlack) -> None:
    answer = ask(bot, slack, "drill ai-malfunction", APPROVER, "drill-start")
    assert "Drill started: ai-malfunction (run 1)" in answer
    assert "nothing real changes" in answer

    root = slack.wait_for(lambda: slack.roots(CHANNEL), timeout=30)[0]
    assert "DRILL" in (root.text or "") + json.dumps(root.blocks, ensure_ascii=False)
    assert bot.scalar("SELECT trigger FROM drill_runs WHERE id = 1") == "slack"
    assert bot.scalar("SELECT started_by FROM drill_runs WHERE id = 1") == APPROVER
    assert bot.scalar("SELECT count(*) FROM incidents WHERE drill_run_id = 1") == 1
    audited = bot.scalar("SELECT count(*) FROM audit_log WHERE action = 'drill.started'")
    assert audited == 1


def test_a_participant_may_start_a_drill_and_a_stranger_may_not(
    bot: BotProcess, slack: FakeSlack
) -> None:
    refused = ask(bot, slack, "drill ai-malfunction", STRANGER, "drill-stranger")
    assert "Only approvers, drill participants (`drills.participants`)" in refused
    assert "may start a drill" in refused
    refused_all = ask(bot, slack, "drill all", STRANGER, "drill-stranger-all")
    assert "Only approvers" in refused_all
    assert drill_runs(bot) == 0

    started = ask(bot, slack, "drill --all", PARTICIPANT, "drill-participant")
    assert "Drill started:" in started
    for scenario in FIVE:
        assert scenario in started
    assert drill_runs(bot) == 5
    slack.wait_for(lambda: len(slack.roots(CHANNEL)) == 5, timeout=60)


def test_list_unknown_usage_and_the_mention(bot: BotProcess, slack: FakeSlack) -> None:
    listed = ask(bot, slack, "drill list", APPROVER, "drill-list")
    assert listed.startswith("*Drill scenarios*")
    for scenario in FIVE:
        assert f"`{scenario}`" in listed
    assert "(playbook `frenly-ai-dangerous-edit`)" in listed

    unknown = ask(bot, slack, "drill nope", APPROVER, "drill-nope")
    assert "unknown drill scenario nope" in unknown
    assert "known: " + ", ".join(FIVE) in unknown

    for text in ("drill", "drill ai-malfunction data-loss", "drill ../x", "drill AI"):
        answer = bot.command(text, user=APPROVER)
        assert answer.status_code == 200
        assert "usage: `/incident drill <scenario|all|list>`" in answer.json()["text"], text
    assert drill_runs(bot) == 0

    said = bot.slack(json_body=mention("<@U0FAKEBOT> drill list", APPROVER, "Ev0DRILL1"))
    assert said.status_code == 200
    [ephemeral] = slack.wait_for(lambda: slack.ephemeral(), timeout=15)
    assert ephemeral["user"] == APPROVER
    assert "*Drill scenarios*" in ephemeral["text"]
    assert all(f"`{scenario}`" in ephemeral["text"] for scenario in FIVE)

    by_stranger = mention("<@U0FAKEBOT> drill data-loss", STRANGER, "Ev0DRILL2")
    assert bot.slack(json_body=by_stranger).status_code == 200
    slack.wait_for(lambda: len(slack.ephemeral()) == 2, timeout=15)
    assert "Only approvers" in slack.ephemeral()[1]["text"]
    assert drill_runs(bot) == 0
    assert slack.roots(CHANNEL) == []
