"""Exactly once into Slack: a real bot process killed (kill -9) while Slack holds its post.

The fake Slack stores each chat.postMessage at once but answers it late, so
every kill lands after Slack accepted the post and before the bot recorded it:
the window that used to post the message again once the lease ran out.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bot.store.db import make_engine
from tests.fakes.slack import FakeSlack
from tests.support.bot_process import CHANNEL, BotProcess

DATA = Path(__file__).resolve().parents[1] / "data"
LEASE = "3"  # the bot's call timeout is half of it: 1.5 s
KILLS = 3
EXPECTED = 8  # two critical incidents: each a root, an intro, the playbook and level 1
POST = "chat.postMessage"
# Slack's rows only: other outputs (email, PagerDuty) share the table.
SLACK_POSTS = f"FROM outbox WHERE output = 'slack' AND method = '{POST}'"
POSTS_ENQUEUED = f"SELECT count(*) {SLACK_POSTS}"
SLACK_UNSENT = "SELECT count(*) FROM outbox WHERE output = 'slack' AND state <> 'sent'"


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def start_bot(database_url: str, slack: FakeSlack) -> BotProcess:
    return BotProcess(
        database_url, slack.url, slack.token or "", OUTBOX_LEASE_SECONDS=LEASE
    ).start()


def stored(database_url: str, query: str) -> list[Any]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(query)).all())
    finally:
        engine.dispose()


def test_killed_three_times_mid_post_every_message_exactly_once(database_url: str) -> None:
    with FakeSlack() as slack:
        slack.answer_slowly(5, method="chat.postMessage")  # stored now, answered too late
        bot = start_bot(database_url, slack)
        try:
            assert bot.pagerduty(load("pagerduty-incident-triggered.json")).status_code == 202
            assert bot.alertmanager(load("alertmanager-frenly-ai.json")).status_code == 202
            # Kill the outbox only: every message is enqueued (the webhooks applied,
            # the escalations run) before the first kill.
            bot.wait_applied()
            slack.wait_for(lambda: bot.scalar(POSTS_ENQUEUED) == EXPECTED, timeout=20)
            at_kill = [len(slack.messages(CHANNEL))]
            for _ in range(KILLS):
                # A new post reached Slack; the bot is waiting for the answer.
                slack.wait_for(lambda n=at_kill[-1]: len(slack.messages(CHANNEL)) > n, timeout=30)
                bot.kill()
                at_kill.append(len(slack.messages(CHANNEL)))
                bot = start_bot(database_url, slack)
            slack.answer_slowly(0)

            slack.wait_for(lambda: len(slack.messages(CHANNEL)) >= EXPECTED, timeout=40)
            slack.wait_for(lambda: bot.scalar(SLACK_UNSENT) == 0, timeout=20)
            time.sleep(1.5)  # a late duplicate would show up by now
        finally:
            bot.stop()

        # Each kill landed on a post Slack had just stored, a new one each time.
        assert at_kill == sorted(set(at_kill)) and at_kill[-1] < EXPECTED, at_kill
        counts = Counter((m.thread_ts or m.ts, m.text or "") for m in slack.messages(CHANNEL))
        assert len(slack.messages(CHANNEL)) == EXPECTED, counts
        assert all(n == 1 for n in counts.values()), counts
        roots = slack.roots(CHANNEL)
        assert len(roots) == 2
        assert all(len(slack.thread(CHANNEL, root.ts)) == 3 for root in roots)
        root_ts = stored(database_url, "SELECT slack_root_ts FROM incidents ORDER BY id")
        assert sorted(ts for (ts,) in root_ts) == sorted(root.ts for root in roots)

        # Each killed post was found (by its metadata) and adopted, not posted again.
        sent = stored(database_url, f"SELECT attempts, result_ts {SLACK_POSTS}")
        assert len(sent) == EXPECTED
        # Every post that was not turned away with a 429 made one message: none sent twice.
        assert len([c for c in slack.calls(POST) if c.status != 429]) == EXPECTED
        assert {ts for _, ts in sent} == {m.ts for m in slack.messages(CHANNEL)}
        assert sum(1 for attempts, _ in sent if attempts > 1) >= KILLS
        lookups = slack.calls("conversations.history", ok=True) + slack.calls(
            "conversations.replies", ok=True
        )
        assert len(lookups) >= KILLS
        assert all(c.params["include_all_metadata"] in ("1", "true") for c in lookups)
