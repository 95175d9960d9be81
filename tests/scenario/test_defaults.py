"""The bot as a new user starts it: from a copy of the repository, with no path settings.

Every other end-to-end test sets absolute paths for the config, the playbooks,
the git work folder and the database, so none of them would notice a relative
default that breaks once git runs in another working directory. These start
`nexus-bot serve` with the defaults and use them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.support.bot_process import (
    ALERTMANAGER_TOKEN,
    CHANNEL,
    SIGNING_SECRET,
    BotProcess,
    repository_copy,
)
from tests.unit.actions.actions_git_support import ssot_with_an_ai_commit

DATA = Path(__file__).resolve().parents[1] / "data"
REPO = "nexus/ssot"


def log_lines(stderr: str) -> list[dict[str, Any]]:
    """The bot's JSON log lines (stderr is not a terminal, so the default is JSON)."""
    lines = []
    for line in stderr.splitlines():
        assert line.startswith("{"), f"not a JSON log line: {line!r}"
        lines.append(json.loads(line))
    return lines


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    return repository_copy(tmp_path / "nexus-incident-bot")


def test_a_revert_works_with_the_default_paths(clone: Path, tmp_path: Path) -> None:
    git_root = tmp_path / "git"
    remote, bad = ssot_with_an_ai_commit(git_root, tmp_path / "scratch")
    with FakeSlack() as slack, FakeGitHub(token="ghp_fakefakefakefakefake") as github:
        bot = BotProcess.with_defaults(
            clone,
            SLACK_BOT_TOKEN=slack.token or "",
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=slack.url,
            NEXUS_INCIDENT_CHANNEL=CHANNEL,
            ALERTMANAGER_TOKEN=ALERTMANAGER_TOKEN,
            GITHUB_TOKEN=github.token,
            GITHUB_API_URL=github.url,
            GITHUB_GIT_URL=f"file://{git_root}",
            NEXUS_APPROVERS="U0BOB",
        ).start()
        try:
            batch = json.loads((DATA / "alertmanager-frenly-ai.json").read_text())
            batch["alerts"][0]["labels"].update({"commit": bad, "branch": "main"})
            assert bot.alertmanager(batch).status_code == 202

            def thread() -> list[Any]:
                root = slack.wait_for(lambda: slack.roots(CHANNEL), timeout=15)[0]
                return slack.thread(CHANNEL, root.ts)

            def reply_with(needle: str) -> Any:
                return slack.wait_for(
                    lambda: next(
                        (m for m in thread() if needle in (m.text or "") + json.dumps(m.blocks)),
                        None,
                    ),
                    timeout=30,
                )

            reply_with("remediation.request.revert-ai-commit")
            value = {"p": "frenly-ai-dangerous-edit", "s": "revert-ai-commit", "i": 1}
            asked = bot.click(
                "remediation.request.revert-ai-commit",
                json.dumps(value),
                user="U0ALICE",
                response_url=slack.response_url("request"),
            )
            assert asked.status_code == 200
            reply_with("approval.approve")
            approved = bot.click(
                "approval.approve",
                json.dumps({"r": 1}),
                user="U0BOB",
                response_url=slack.response_url("approve"),
            )
            assert approved.status_code == 200
            answer = slack.wait_for(lambda: slack.responses("approve"), timeout=60)[0]
            assert "done" in json.dumps(answer["blocks"]), answer
        finally:
            bot.stop()
    assert remote.file("ssot_plan/ssot_manifest_proposal.yaml") == "anchors: 36\n"
    assert f"This reverts commit {bad}" in remote.message()
    # The defaults were used, resolved against the folder the bot was started from.
    assert (clone / ".nexus-work" / "mirrors" / "nexus" / "ssot.git").is_dir()
    assert (clone / "nexus-bot.db").is_file()
    (paths,) = [line for line in log_lines(bot.stderr) if line["event"] == "paths"]
    assert paths["workdir"] == str(clone / ".nexus-work")
    assert paths["config"] == str(clone / "config" / "nexus.yaml")
    assert paths["playbooks"] == str(clone / "playbooks")
    assert paths["database"] == f"sqlite:///{clone / 'nexus-bot.db'}"


def test_an_idle_bot_writes_nothing_after_start_up(clone: Path) -> None:
    """The sweeps run every second; their per-run lines must not reach the log."""
    bot = BotProcess.with_defaults(clone).start()
    healthy = time.time()
    time.sleep(7)  # several escalation sweeps and one request-expiry sweep
    quiet_until = time.time()
    bot.stop()
    lines = log_lines(bot.stderr)
    started = [line for line in lines if line["event"].startswith("Application startup complete")]
    assert started, bot.stderr
    after_start_up = [
        line for line in lines if healthy + 0.5 < _epoch(line["timestamp"]) < quiet_until
    ]
    assert after_start_up == []
    # Drill schedules start counting at the first start (logged before healthy).
    baselines = [line["schedule"] for line in lines if line["event"] == "drill schedule baseline"]
    assert sorted(baselines) == ["monthly", "quarterly", "weekly"]
    # The sweeps did run: APScheduler knows them by name.
    added = [line["event"] for line in lines if line["event"].startswith("Added job")]
    assert sorted(added) == [
        'Added job "drill-schedule" to job store "default"',
        'Added job "drill-sweep" to job store "default"',
        'Added job "escalation-sweep" to job store "default"',
        'Added job "playbook-review-reminders" to job store "default"',
        'Added job "remediation-request-expiry" to job store "default"',
        'Added job "review-follow-up" to job store "default"',
        'Added job "status-page-refresh" to job store "default"',
        'Added job "update-reminders" to job store "default"',
    ]


def _epoch(timestamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize(("log_format", "json_lines"), [("json", True), ("console", False)])
def test_log_format_chooses_json_or_console(clone: Path, log_format: str, json_lines: bool) -> None:
    bot = BotProcess.with_defaults(clone, LOG_FORMAT=log_format).start()
    assert bot.stop() == 0
    lines = [line for line in bot.stderr.splitlines() if line.strip()]
    assert lines
    assert all(line.startswith("{") == json_lines for line in lines), bot.stderr[:2000]
    serving = next(line for line in lines if "serving" in line)
    if not json_lines:
        # structlog's console renderer: time, [level], event, then key=value pairs.
        assert "[info     ] serving" in serving and "port=" in serving
