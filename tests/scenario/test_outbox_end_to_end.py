"""The outbox seen from outside: a real bot process, a misbehaving Slack, a kill -9."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.fakes.slack import FakeSlack
from tests.support.bot_process import CHANNEL, BotProcess

DATA = Path(__file__).resolve().parents[1] / "data"


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def texts_posted(slack: FakeSlack) -> Counter[tuple[str, str]]:
    """Each message by (thread, text): two incidents may say the same words."""
    return Counter((m.thread_ts or m.ts, m.text or "") for m in slack.messages(CHANNEL))


def test_slack_500s_then_429s_every_message_once(database_url: str) -> None:
    with FakeSlack() as slack:
        slack.fail_next(5, method="chat.postMessage")
        slack.rate_limit_next(3, retry_after=1, method="chat.postMessage", skip=0)
        bot = BotProcess(database_url, slack.url, slack.token or "").start()
        try:
            assert bot.pagerduty(load("pagerduty-incident-triggered.json")).status_code == 202
            assert bot.alertmanager(load("alertmanager-frenly-ai.json")).status_code == 202
            # Two critical incidents: each a root, an intro, the playbook and level 1.
            slack.wait_for(lambda: len(slack.messages(CHANNEL)) >= 8, timeout=40)
            time.sleep(1.5)
            counts = texts_posted(slack)
            assert len(slack.messages(CHANNEL)) == 8
            assert all(n == 1 for n in counts.values()), counts
            assert len(slack.roots(CHANNEL)) == 2
            failed = [c for c in slack.calls("chat.postMessage") if not c.ok]
            assert len(failed) >= 8  # the bot really went through the 500s and 429s
        finally:
            bot.stop()


def test_killed_mid_outbox_delivers_after_restart_once(database_url: str) -> None:
    with FakeSlack() as slack:
        # Let the root through, then park the next post: the bot is mid-delivery.
        slack.hold_next(1, method="chat.postMessage", skip=1)
        first = BotProcess(
            database_url, slack.url, slack.token or "", OUTBOX_LEASE_SECONDS="4"
        ).start()
        assert first.pagerduty(load("pagerduty-incident-triggered.json")).status_code == 202
        slack.wait_for(lambda: slack.held_count == 1, timeout=15)
        first.kill()
        slack.release(drop=True)  # the parked call never took effect
        assert len(slack.messages(CHANNEL)) == 1

        second = BotProcess(
            database_url, slack.url, slack.token or "", OUTBOX_LEASE_SECONDS="4"
        ).start()
        try:
            # The dead process's claim has to lapse before the row is retried.
            slack.wait_for(lambda: len(slack.messages(CHANNEL)) >= 4, timeout=30)
            time.sleep(1.5)
            counts = texts_posted(slack)
            assert len(slack.messages(CHANNEL)) == 4, counts
            assert all(n == 1 for n in counts.values()), counts
            assert len(slack.thread(CHANNEL, slack.roots(CHANNEL)[0].ts)) == 3
        finally:
            second.stop()
