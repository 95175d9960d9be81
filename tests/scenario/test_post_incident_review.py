"""Post-incident review end to end: two replicas on PostgreSQL, the Slack and GitHub
fakes over real HTTP. An incident climbs to level 2, gets a public update and is
resolved; exactly one review issue is filed (also when `/incident review` is sent
twice to both replicas), linked in the thread, and `nexus-bot report` shows the
incident's MTTA and MTTR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.github import FakeGitHub
from tests.fakes.kubernetes import FakeKubernetes
from tests.fakes.slack import FakeSlack
from tests.support.bot_process import CHANNEL, REPO_ROOT, BotProcess

DATA = Path(__file__).resolve().parents[1] / "data"
REVIEWS = "nexus/incident-reviews"


@dataclass
class Stage:
    slack: FakeSlack
    github: FakeGitHub
    replicas: list[BotProcess]
    database_url: str
    config: Path

    def thread_texts(self) -> list[str]:
        root = self.slack.wait_for(lambda: self.slack.roots(CHANNEL), timeout=20)[0]
        return [m.text or "" for m in self.slack.thread(CHANNEL, root.ts)[1:]]

    def wait_reply(self, needle: str, timeout: float = 30) -> str:
        return str(
            self.slack.wait_for(
                lambda: next((t for t in self.thread_texts() if needle in t), None),
                timeout=timeout,
            )
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DATABASE_URL": self.database_url, "NEXUS_CONFIG": str(self.config)}
        return subprocess.run(
            [sys.executable, "-m", "bot", *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def stage(postgres_url: str, tmp_path: Path) -> Iterator[Stage]:
    config = yaml.safe_load((REPO_ROOT / "config" / "nexus.yaml").read_text())
    config["roles"]["commander"]["slack"] = ["U0LEAD"]
    config["review"] = {"repo": REVIEWS, "github_logins": {"U0LEAD": "octo-lead"}}
    path = tmp_path / "nexus.yaml"
    path.write_text(yaml.safe_dump(config))
    with (
        FakeSlack() as slack,
        FakeGitHub(token="ghp_fakefakefakefakefake") as github,
        FakeKubernetes() as kube,
    ):
        kube.add_deployment("ai", "frenly-ai", replicas=3)
        github.add_repo(REVIEWS)
        github.add_assignable(REVIEWS, "octo-lead")
        env = {
            "NEXUS_CONFIG": str(path),
            "GITHUB_TOKEN": github.token,
            "GITHUB_API_URL": github.url,
            "NEXUS_ESCALATION_DELAYS": "2s,10m,20m",
            "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
            "NEXUS_APPROVERS": "U0BOB",
        }
        replicas = [BotProcess(postgres_url, slack.url, slack.token or "", **env) for _ in range(2)]
        replicas[0].start()
        replicas[1].start()
        try:
            yield Stage(slack, github, replicas, postgres_url, path)
        finally:
            for bot in replicas:
                bot.stop()
                print(bot.stderr[-15000:])


def alert() -> dict[str, Any]:
    return json.loads((DATA / "alertmanager-frenly-ai.json").read_text())


def test_resolving_files_one_review_issue_and_report_shows_the_figures(stage: Stage) -> None:
    first, second = stage.replicas
    assert first.alertmanager(alert()).status_code == 202
    stage.wait_reply("Level 2 — Engineering manager")
    # Scale Frenly AI to zero: requested by one person, approved by another, run.
    value = json.dumps({"p": "frenly-ai-dangerous-edit", "s": "scale-to-zero", "i": 1})
    requested = first.click(
        "remediation.request.scale-to-zero",
        value,
        user="U0ALICE",
        response_url=stage.slack.response_url("request"),
    )
    assert requested.status_code == 200
    stage.wait_reply("Remediation #1 needs approval")
    approved = second.click(
        "approval.approve",
        json.dumps({"r": 1}),
        user="U0BOB",
        response_url=stage.slack.response_url("approve"),
    )
    assert approved.status_code == 200
    stage.wait_reply("Remediation #1 (")
    assert "now acknowledged" in second.command("ack 1", user="U0LEAD").json()["text"]
    second.command('update identified "Bad anchor v37 reverted" 1', user="U0LEAD")
    assert "now resolved" in first.command("resolve 1", user="U0LEAD").json()["text"]
    assert "Filing the post-incident review in nexus/incident-reviews" in stage.wait_reply(
        "Resolved by"
    )
    # Asked for again, twice, on both replicas while it is being filed.
    for bot in (first, second, first, second):
        bot.command("review 1", user="U0LEAD")
    link = stage.wait_reply(":clipboard: Post-incident review: <")
    stage.slack.wait_for(lambda: len(stage.github.issues(REVIEWS)) >= 1, timeout=20)
    [issue] = stage.github.issues(REVIEWS)
    assert issue.title.startswith("Post-incident review: #1 ")
    assert {"post-incident-review", "severity/critical"} <= set(issue.labels)
    assert issue.assignees == ["octo-lead"]
    body = issue.body
    order = [
        "## Summary",
        "## Key times (UTC)",
        "## Durations",
        "## Escalation",
        "Level 2 — Engineering manager",
        "## Remediations",
        "Requested by `@U0ALICE`",
        "Approved by `@U0BOB`",
        "Result: done",
        "## Public updates",
        "**Identified**: Bad anchor v37 reverted",
        "## Alerts",
        "## Root causes",
        "## Procedures to update",
        "## Monitoring to improve",
        "- [ ] `FrenlyAIDangerousEdit`",
        "## Training",
    ]
    positions = [body.index(part) for part in order]
    assert positions == sorted(positions), "sections in order"
    assert body.rstrip().endswith("<!-- nexus-incident: 1 -->")
    assert str(issue.number) in link
    # The root message links it too; nothing more is filed later.
    root = stage.slack.roots(CHANNEL)[0]
    stage.slack.wait_for(
        lambda: "Post-incident review" in json.dumps(stage.slack.message(CHANNEL, root.ts).blocks),
        timeout=20,
    )
    assert len(stage.github.issues(REVIEWS)) == 1
    # The figures: MTTA and MTTR of this incident.
    report = stage.cli("report", "--json")
    assert report.returncode == 0, report.stderr
    figures = json.loads(report.stdout)["by_playbook"]["frenly-ai-dangerous-edit"]
    assert figures["incidents"] == 1
    assert figures["time_to_acknowledge"]["count"] == 1
    assert figures["time_to_resolve"]["count"] == 1
    assert (
        0
        < figures["time_to_acknowledge"]["mean_seconds"]
        <= figures["time_to_resolve"]["mean_seconds"]
    )
    assert figures["highest_escalation_level"] == 2
    # Without credentials the same review is printed by the CLI.
    printed = stage.cli("review", "1")
    assert printed.returncode == 0
    assert "## Durations" in printed.stdout and "Bad anchor v37 reverted" in printed.stdout
