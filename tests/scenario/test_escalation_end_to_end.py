"""The escalation ladder with real timers: a real bot process (or two), seconds-long
delays, fake Slack, PagerDuty over TLS with a test CA, and a real SMTP server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import FakeSlack
from tests.support.bot_process import CHANNEL, BotProcess, config_with_contacts
from tests.unit.notify.notify_support import BoundController, Recorder

DATA = Path(__file__).resolve().parents[1] / "data"
PD_INCIDENT = "Q1NEXUS7SCHEMA"


@dataclass
class Ladder:
    slack: FakeSlack
    pagerduty: FakePagerDuty
    mail: Recorder
    env: dict[str, str]
    database_url: str
    started: list[BotProcess]

    def bot(self) -> BotProcess:
        process = BotProcess(self.database_url, self.slack.url, self.slack.token or "", **self.env)
        self.started.append(process)
        return process

    def level_replies(self, level: int) -> list[Any]:
        return [m for m in self.slack.messages(CHANNEL) if f"Level {level} —" in (m.text or "")]

    def wait_level(self, level: int, timeout: float = 20) -> None:
        self.slack.wait_for(lambda: self.level_replies(level), timeout=timeout)

    def mails_for(self, level: int) -> list[str]:
        return [
            m.message["Subject"]
            for m in self.mail.messages
            if f"Level {level} —" in m.message["Subject"]
        ]


@pytest.fixture
def ladder(tmp_path: Path) -> Iterator[Ladder]:
    path = config_with_contacts(tmp_path, slack_users=True)
    recorder = Recorder()
    smtp = BoundController(recorder)
    smtp.start()
    try:
        with FakeSlack() as slack, FakePagerDuty() as pagerduty:
            pagerduty.add_incident(PD_INCIDENT, title="Schema mismatch")
            env = {
                "NEXUS_CONFIG": str(path),
                "PAGERDUTY_API_URL": pagerduty.url,
                "PAGERDUTY_API_TOKEN": pagerduty.token,
                "PAGERDUTY_FROM_EMAIL": pagerduty.user_email,
                "PAGERDUTY_CA_BUNDLE": pagerduty.ca_file,
                "SMTP_URL": f"smtp://127.0.0.1:{smtp.port}?starttls=never",
            }
            stage = Ladder(slack, pagerduty, recorder, env, "", [])
            try:
                yield stage
            finally:
                for process in stage.started:
                    process.stop()
                    print(process.stderr[-20000:])  # shown when a test fails
    finally:
        smtp.stop()


def trigger() -> dict[str, Any]:
    return json.loads((DATA / "pagerduty-incident-triggered.json").read_text())


def test_climbs_in_slack_email_and_pagerduty_until_acknowledged(
    ladder: Ladder, database_url: str
) -> None:
    ladder.database_url = database_url
    ladder.env["NEXUS_ESCALATION_DELAYS"] = "2s,4s,40s"
    bot = ladder.bot().start()
    try:
        started = time.monotonic()
        assert bot.pagerduty(trigger()).status_code == 202
        ladder.wait_level(1)
        ladder.wait_level(2)
        ladder.wait_level(3)
        assert time.monotonic() - started < 15
        reply = ladder.level_replies(2)[0].text
        assert "Engineering manager" in reply and "<@U0LEVEL2>" in reply
        assert "not acknowledged for" in reply
        assert ladder.level_replies(3)[0].text.count("CTO") == 1
        ladder.slack.wait_for(lambda: ladder.pagerduty.incident(PD_INCIDENT).escalation_level == 3)
        notes = ladder.pagerduty.incident(PD_INCIDENT).notes
        assert any("level 2" in json.dumps(n) for n in notes)
        ladder.slack.wait_for(lambda: ladder.mails_for(2) and ladder.mails_for(3))
        root = ladder.slack.roots(CHANNEL)[0]
        ladder.slack.wait_for(
            lambda: "Level 3" in json.dumps(ladder.slack.message(CHANNEL, root.ts).blocks)
        )

        assert "now acknowledged" in bot.command("ack 1").json()["text"]
        time.sleep(3)
        assert ladder.level_replies(4) == []  # acknowledged before level 4 was due
        timeline = bot.command("timeline 1").json()["text"]
        assert timeline.count(" — level ") == 3  # levels 1, 2 and 3 on the timeline
    finally:
        bot.stop()


def test_killed_between_levels_the_overdue_level_fires_once(
    ladder: Ladder, database_url: str
) -> None:
    ladder.database_url = database_url
    ladder.env["NEXUS_ESCALATION_DELAYS"] = "2s,5s,60s"
    # A Slack call the killed process had claimed is retried once its lease lapses.
    ladder.env["OUTBOX_LEASE_SECONDS"] = "4"
    first = ladder.bot().start()
    assert first.pagerduty(trigger()).status_code == 202
    ladder.wait_level(2)
    # Let the delivery of level 2 be recorded first: a kill between Slack's answer and
    # that commit re-sends the message (the outbox's documented window), which is
    # not what this test is about.
    time.sleep(1)
    first.kill()
    time.sleep(5)  # level 3 falls due while nobody runs
    second = ladder.bot().start()
    try:
        ladder.wait_level(3, timeout=20)
        time.sleep(3)
        assert len(ladder.level_replies(2)) == 1
        assert len(ladder.level_replies(3)) == 1
        assert ladder.level_replies(4) == []
    finally:
        second.stop()


@pytest.mark.postgres
def test_two_replicas_post_each_level_once(ladder: Ladder, postgres_url: str) -> None:
    ladder.database_url = postgres_url
    ladder.env["NEXUS_ESCALATION_DELAYS"] = "2s,4s,6s"
    bots = [ladder.bot().start(), ladder.bot().start()]
    try:
        assert bots[0].pagerduty(trigger()).status_code == 202
        ladder.wait_level(4, timeout=25)
        time.sleep(3)
        for level in (1, 2, 3, 4):
            assert len(ladder.level_replies(level)) == 1, level
        assert len(ladder.mails_for(2)) == 1
        sets = [r for r in ladder.pagerduty.requests() if r.method == "PUT"]
        assert len(sets) == 3  # levels 2, 3, 4, each set once in PagerDuty
    finally:
        for bot in bots:
            bot.stop()
