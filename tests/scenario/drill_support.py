"""The stage of the recovery-drill scenario tests: a running bot with fake Slack,
GitHub, Kubernetes and PagerDuty over HTTP, a real SMTP server and a bare git
repository; `drill run` as a process; and the check that nothing real changed."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.fakes.github import FakeGitHub
from tests.fakes.kubernetes import FakeKubernetes
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import FakeSlack
from tests.support.bot_process import CHANNEL, REPO_ROOT, BotProcess
from tests.unit.actions.actions_git_support import Remote, ssot_with_an_ai_commit
from tests.unit.notify.notify_support import BoundController, Recorder

REPO = "nexus/ssot"
REVIEWS = "nexus/incident-reviews"
DRILL_PR = 1


@dataclass
class Drill:
    bot: BotProcess
    slack: FakeSlack
    kube: FakeKubernetes
    github: FakeGitHub
    pagerduty: FakePagerDuty
    mail: Recorder
    remote: Remote
    main_before: str
    cli: list[subprocess.Popen[str]] = field(default_factory=list)

    def run(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "drill", "run", *args],
            cwd=REPO_ROOT,
            env=self.bot.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.cli.append(process)
        return process

    def incident_of(self, run_id: int, timeout: float = 30) -> int:
        def applied() -> int | None:
            value = self.bot.scalar(f"SELECT max(incident_id) FROM drill_runs WHERE id = {run_id}")
            return int(value) if value is not None else None

        return int(self.slack.wait_for(applied, timeout=timeout))

    def thread_of(self, incident: int) -> list[Any]:
        ts = self.slack.wait_for(
            lambda: self.bot.scalar(
                f"SELECT max(slack_root_ts) FROM incidents WHERE id = {incident}"
            ),
            timeout=30,
        )
        return self.slack.thread(CHANNEL, ts)

    def wait_reply(self, incident: int, needle: str, timeout: float = 30) -> Any:
        def found() -> Any:
            return next(
                (
                    m
                    for m in self.thread_of(incident)
                    if needle in (m.text or "") + json.dumps(m.blocks, ensure_ascii=False)
                ),
                None,
            )

        return self.slack.wait_for(found, timeout=timeout)

    def click(self, action_id: str, value: dict[str, Any], user: str, response: str) -> str:
        answer = self.bot.click(
            action_id, json.dumps(value), user=user, response_url=self.slack.response_url(response)
        )
        assert answer.status_code == 200, answer.text
        return str(self.slack.wait_for(lambda: self.slack.responses(response), timeout=60)[0])

    def request_and_approve(self, incident: int, playbook: str, step: str) -> None:
        value = {"p": playbook, "s": step, "i": incident}
        asked = self.click(
            f"remediation.request.{step}", value, "U0ALICE", f"ask-{incident}-{step}"
        )
        assert "Waiting for a second person" in asked, asked
        request_id = int(
            self.slack.wait_for(
                lambda: self.bot.scalar(
                    "SELECT max(id) FROM remediation_requests "
                    f"WHERE incident_id = {incident} AND step_id = '{step}' AND state = 'pending'"
                ),
                timeout=30,
            )
        )
        self.click("approval.approve", {"r": request_id}, "U0BOB", f"ok-{incident}-{step}")

    def acknowledge(self, incident: int) -> None:
        assert self.bot.command(f"ack {incident}", user="U0CAROL").status_code == 200

    def assert_nothing_real_changed(self, *, rehearsed: bool = True) -> None:
        # Kubernetes: every write was a server-side dry run.
        assert self.kube.patches(dry_run=False) == []
        assert self.kube.creates(dry_run=False) == []  # no Job ran for real
        if rehearsed:
            assert self.kube.patches(dry_run=True), "the rehearsal never reached the API server"
        assert int(self.kube.deployment("ai", "frenly-ai")["spec"]["replicas"]) == 3
        # GitHub: the pull request is open, nobody commented on it or closed it.
        assert self.github.pull(REPO, DRILL_PR).state == "open"
        writes = [c for c in self.github.api_calls() if c.method in ("POST", "PATCH")]
        assert not [c for c in writes if f"/repos/{REPO}/" in c.path], writes
        # git: main did not move and no drill branch is left behind.
        assert self.remote.head("main") == self.main_before
        assert [b for b in self.remote.branches() if b.startswith("drill/")] == []
        # No page, no email.
        assert self.pagerduty.requests() == []
        assert self.pagerduty.events() == []
        assert self.mail.messages == []


def _config(tmp_path: Path) -> Path:
    config = yaml.safe_load((REPO_ROOT / "config" / "nexus.yaml").read_text())
    config["drills"]["participants"] = ["U0CAROL"]
    config["drills"]["timeout"] = "4m"
    config["review"]["repo"] = REVIEWS
    for level in config["escalation"]["levels"]:
        level["email"] = [f"level{level['level']}@nexus.test"]
    config["roles"]["stakeholders"]["email"] = ["leads@nexus.test"]
    path = tmp_path / "nexus.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def drill_stage(database_url: str, tmp_path: Path) -> Iterator[Drill]:
    """A running bot with every fake it can talk to, and a bare `nexus/ssot` repository."""
    git_root = tmp_path / "git"
    remote, _ = ssot_with_an_ai_commit(git_root, tmp_path / "scratch")
    recorder = Recorder()
    smtp = BoundController(recorder)
    smtp.start()
    try:
        with (
            FakeSlack() as slack,
            FakeKubernetes() as kube,
            FakeGitHub(token="ghp_fakefakefakefakefake") as github,
            FakePagerDuty() as pagerduty,
        ):
            kube.add_deployment("ai", "frenly-ai", replicas=3)
            kube.add_configmap("nexus", "ssot-config", {"enabled": "true"})
            # The data-loss drill's restore verifies with the validation Job (a dry run).
            kube.add_cronjob("nexus", "ssot-validate", command=["python", "validate_ssot.py"])
            github.add_pull(REPO, DRILL_PR, title="Drill target: keep open", files=["README.md"])
            github.add_repo(REVIEWS)
            bot = BotProcess(
                database_url,
                slack.url,
                slack.token or "",
                NEXUS_CONFIG=str(_config(tmp_path)),
                KUBECONFIG=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
                GITHUB_TOKEN=github.token,
                GITHUB_API_URL=github.url,
                GITHUB_GIT_URL=f"file://{git_root}",
                NEXUS_WORKDIR=str(tmp_path / "work"),
                NEXUS_APPROVERS="U0BOB",
                PAGERDUTY_API_URL=pagerduty.url,
                PAGERDUTY_API_TOKEN=pagerduty.token,
                PAGERDUTY_FROM_EMAIL=pagerduty.user_email,
                PAGERDUTY_CA_BUNDLE=pagerduty.ca_file,
                PAGERDUTY_ROUTING_KEY="R0UTINGKEY0000000000000000000000",
                PAGERDUTY_EVENTS_URL=pagerduty.events_url,
                SMTP_URL=f"smtp://127.0.0.1:{smtp.port}?starttls=never",
            ).start()
            stage = Drill(bot, slack, kube, github, pagerduty, recorder, remote, remote.head())
            try:
                yield stage
            finally:
                for process in stage.cli:
                    if process.poll() is None:
                        process.kill()
                bot.stop()
                print(bot.stderr[-20000:])
    finally:
        smtp.stop()
