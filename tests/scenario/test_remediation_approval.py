"""Two-person approval end to end: a real bot process, fake Slack, Kubernetes and
GitHub over HTTP, and real git repositories on disk."""

from __future__ import annotations

import copy
import json
import threading
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
from tests.unit.actions.actions_git_support import Remote, ssot_with_an_ai_commit

DATA = Path(__file__).resolve().parents[1] / "data"
REPO = "nexus/ssot"


@dataclass
class Stage:
    bot: BotProcess
    slack: FakeSlack
    kube: FakeKubernetes
    github: FakeGitHub
    remote: Remote
    bad_commit: str

    def thread(self) -> list[Any]:
        root = self.slack.wait_for(lambda: self.slack.roots(CHANNEL), timeout=10)[0]
        return self.slack.thread(CHANNEL, root.ts)

    def wait_reply(self, needle: str, timeout: float = 15) -> Any:
        def found() -> Any:
            return next(
                (m for m in self.thread() if needle in (m.text or "") + json.dumps(m.blocks)), None
            )

        return self.slack.wait_for(found, timeout=timeout)

    def click(
        self, action_id: str, value: dict[str, Any], user: str, response_id: str
    ) -> dict[str, Any]:
        answer = self.bot.click(
            action_id,
            json.dumps(value),
            user=user,
            response_url=self.slack.response_url(response_id),
        )
        assert answer.status_code == 200, answer.text
        return self.slack.wait_for(lambda: self.slack.responses(response_id), timeout=30)[0]

    def request(self, step: str, user: str = "U0ALICE") -> dict[str, Any]:
        value = {"p": "frenly-ai-dangerous-edit", "s": step, "i": 1}
        return self.click(f"remediation.request.{step}", value, user, f"request-{step}-{user}")

    def replicas(self) -> int:
        return int(self.kube.deployment("ai", "frenly-ai")["spec"]["replicas"])

    def real_patches(self) -> int:
        return len(self.kube.patches(dry_run=False))


def frenly_alert(commit: str) -> dict[str, Any]:
    batch = json.loads((DATA / "alertmanager-frenly-ai.json").read_text())
    batch["alerts"][0]["labels"].update({"commit": commit, "branch": "main"})
    return batch


@pytest.fixture
def stage(database_url: str, tmp_path: Path) -> Iterator[Stage]:
    git_root = tmp_path / "git"
    remote, bad = ssot_with_an_ai_commit(git_root, tmp_path / "scratch")
    config = tmp_path / "nexus.yaml"
    config.write_text((REPO_ROOT / "config" / "nexus.yaml").read_text())
    with (
        FakeSlack(usergroups={"S0LEADS": ["U0CAROL"]}) as slack,
        FakeKubernetes() as kube,
        FakeGitHub(token="ghp_fakefakefakefakefake") as github,
    ):
        kube.add_deployment("ai", "frenly-ai", replicas=3)
        kube.add_configmap("nexus", "ssot-config", {"enabled": "true"})
        github.add_pull(
            REPO,
            318,
            title="Frenly AI: rewrite SSOT anchors",
            files=["ssot_plan/ssot_manifest_proposal.yaml"],
        )
        bot = BotProcess(
            database_url,
            slack.url,
            slack.token or "",
            NEXUS_CONFIG=str(config),
            KUBECONFIG=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
            GITHUB_TOKEN=github.token,
            GITHUB_API_URL=github.url,
            GITHUB_GIT_URL=f"file://{git_root}",
            NEXUS_WORKDIR=str(tmp_path / "work"),
            NEXUS_APPROVERS="U0BOB,S0LEADS",
        ).start()
        stage = Stage(bot, slack, kube, github, remote, bad)
        try:
            assert bot.alertmanager(frenly_alert(bad)).status_code == 202
            stage.wait_reply("remediation.request.scale-to-zero")
            yield stage
        finally:
            # A test may have swapped in another process (stage.bot): stop both.
            stage.bot.stop()
            bot.stop()
            print(bot.stderr[-20000:], stage.bot.stderr[-20000:])


def test_scale_to_zero_needs_a_second_authorised_person(stage: Stage) -> None:
    asked = stage.request("scale-to-zero")
    assert "Waiting for a second person" in asked["text"]
    card = stage.wait_reply("approval.approve")
    card_text = json.dumps(card.blocks, ensure_ascii=False)
    assert "3 → 0 replicas" in card_text and "<@U0ALICE>" in card_text
    assert stage.real_patches() == 0  # a preview is a dry run only

    own = stage.click("approval.approve", {"r": 1}, "U0ALICE", "self")
    assert "second, different person" in own["text"]
    stranger = stage.click("approval.approve", {"r": 1}, "U0MALLORY", "stranger")
    assert "not on the approver list" in stranger["text"]
    assert stage.replicas() == 3

    approved = stage.click("approval.approve", {"r": 1}, "U0CAROL", "carol")  # via user group
    assert approved["replace_original"] is True
    assert "done" in json.dumps(approved["blocks"])
    assert stage.replicas() == 0
    assert stage.real_patches() == 1
    undo = stage.wait_reply("remediation.undo")
    assert "Restore 3 replicas" in json.dumps(undo.blocks)

    timeline = stage.bot.command("timeline 1").json()["text"]
    for step in (
        "<@U0ALICE> — requested remediation #1",
        "<@U0CAROL> — approved remediation #1 (requested by <@U0ALICE>)",
        "<@U0CAROL> — remediation #1 done (approved by <@U0CAROL>)",
    ):
        assert step in timeline

    # Undo is a request like any other: it needs its own approval.
    restore = stage.click("remediation.undo", {"r": 1}, "U0BOB", "undo")
    assert "Waiting for a second person" in restore["text"]
    stage.wait_reply("Remediation #2 needs approval")
    done = stage.click("approval.approve", {"r": 2}, "U0CAROL", "undo-approve")
    assert "done" in json.dumps(done["blocks"])
    assert stage.replicas() == 3


def test_two_approvers_at_the_same_moment_execute_once(stage: Stage) -> None:
    stage.request("scale-to-zero")
    stage.wait_reply("approval.approve")
    answers: list[dict[str, Any]] = []
    barrier = threading.Barrier(3)

    def approve(index: int, user: str) -> None:
        barrier.wait()
        answers.append(stage.click("approval.approve", {"r": 1}, user, f"race-{index}"))

    clickers = enumerate(("U0BOB", "U0CAROL", "U0BOB"))
    threads = [threading.Thread(target=approve, args=pair) for pair in clickers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stage.real_patches() == 1
    assert stage.replicas() == 0
    assert len(answers) == 3
    assert sum("done" in json.dumps(a.get("blocks", "")) for a in answers) == 1


def test_world_changed_since_the_preview_does_nothing(stage: Stage) -> None:
    stage.request("scale-to-zero")
    stage.wait_reply("approval.approve")
    stage.kube.update_deployment("ai", "frenly-ai", lambda d: d["spec"].update(replicas=5))
    answer = stage.click("approval.approve", {"r": 1}, "U0BOB", "changed")
    assert "replicas changed from 3 to 5" in answer["text"]
    assert stage.replicas() == 5


def test_revert_the_ai_commit_after_approval(stage: Stage) -> None:
    stage.request("revert-ai-commit")
    card = stage.wait_reply("approval.approve")
    assert "Frenly AI: rewrite anchors" in json.dumps(card.blocks)  # the commit's title, live
    answer = stage.click("approval.approve", {"r": 1}, "U0BOB", "revert")
    assert "done" in json.dumps(answer["blocks"]), answer
    assert stage.remote.file("ssot_plan/ssot_manifest_proposal.yaml") == "anchors: 36\n"
    message = stage.remote.message()
    assert f"This reverts commit {stage.bad_commit}" in message
    assert "approved by <@U0BOB>" in message


def test_close_the_ai_pull_request_after_approval(stage: Stage) -> None:
    stage.request("close-pr")
    card = stage.wait_reply("approval.approve")
    assert "Frenly AI: rewrite SSOT anchors" in json.dumps(card.blocks)
    stage.click("approval.approve", {"r": 1}, "U0CAROL", "close")
    pull = stage.github.pull(REPO, 318)
    assert pull.state == "closed"
    assert pull.comments and pull.comments[0].startswith("Rejected: Dangerous change detected")


def test_deny_asks_for_a_reason_and_closes_the_card(stage: Stage) -> None:
    stage.request("scale-to-zero")
    stage.wait_reply("approval.approve")
    response_url = stage.slack.response_url("deny-card")
    stage.bot.click("approval.deny", json.dumps({"r": 1}), user="U0BOB", response_url=response_url)
    views = stage.slack.wait_for(lambda: stage.slack.views(), timeout=10)
    modal = next(iter(views.values()))
    assert modal["callback_id"] == "approval.deny_reason"
    submit_view(stage, modal, "U0BOB", {"reason": "Drill only"})
    closed = stage.slack.wait_for(lambda: stage.slack.responses("deny-card"), timeout=10)[0]
    assert "denied" in json.dumps(closed["blocks"])
    stage.wait_reply("denied by <@U0BOB>: Drill only")
    late = stage.click("approval.approve", {"r": 1}, "U0CAROL", "late")
    assert "already denied" in late["text"]
    assert stage.replicas() == 3


def submit_view(stage: Stage, view: dict[str, Any], user: str, values: dict[str, str]) -> None:
    submission = {
        "type": "view_submission",
        "user": {"id": user},
        "team": {"id": "T0FAKE000"},
        "api_app_id": "A0NEXUS",
        "view": {
            **copy.deepcopy(view),
            "state": {
                "values": {
                    f"param-{k}": {"value": {"type": "plain_text_input", "value": v}}
                    for k, v in values.items()
                }
            },
        },
    }
    assert stage.bot.slack({"payload": json.dumps(submission)}).status_code == 200


def test_missing_parameter_is_asked_for_in_a_modal(stage: Stage) -> None:
    # A declared incident has no `commit` label: the revert step must ask for it.
    declared = stage.bot.command(
        "declare Frenly AI pushed straight to main --playbook frenly-ai-dangerous-edit",
        response_url=stage.slack.response_url("declare"),
    )
    assert declared.status_code == 200
    stage.slack.wait_for(lambda: stage.slack.responses("declare"), timeout=10)
    value = {"p": "frenly-ai-dangerous-edit", "s": "revert-ai-commit", "i": 2}
    stage.bot.click("remediation.request.revert-ai-commit", json.dumps(value), user="U0ALICE")
    views = stage.slack.wait_for(lambda: stage.slack.views(), timeout=10)
    modal = next(iter(views.values()))
    assert modal["callback_id"] == "remediation.params"
    assert [b["block_id"] for b in modal["blocks"] if b["type"] == "input"] == ["param-commit"]
    # An empty answer is refused in the modal itself (Slack shows the error under the field).
    submit_view(stage, modal, "U0ALICE", {"commit": "not a sha"})
    ephemeral = stage.slack.wait_for(lambda: stage.slack.ephemeral(), timeout=10)
    assert "commit" in ephemeral[0]["text"]
    submit_view(stage, modal, "U0ALICE", {"commit": stage.bad_commit})
    stage.slack.wait_for(
        lambda: any("needs approval" in (m.text or "") for m in stage.slack.messages(CHANNEL)),
        timeout=15,
    )


def second_bot(stage: Stage, **env: str) -> BotProcess:
    other = BotProcess(stage.bot.env["DATABASE_URL"], stage.slack.url, stage.slack.token or "")
    other.env = {**stage.bot.env, "PORT": str(other.port), **env}
    return other.start()


def test_two_replicas_on_one_database_execute_once(stage: Stage) -> None:
    replica = second_bot(stage)
    try:
        stage.request("scale-to-zero")
        stage.wait_reply("approval.approve")
        barrier = threading.Barrier(2)
        answers: list[Any] = []

        def approve(bot: BotProcess, user: str, response_id: str) -> None:
            barrier.wait()
            bot.click(
                "approval.approve",
                json.dumps({"r": 1}),
                user=user,
                response_url=stage.slack.response_url(response_id),
            )
            answers.append(stage.slack.wait_for(lambda: stage.slack.responses(response_id), 30))

        threads = [
            threading.Thread(target=approve, args=(stage.bot, "U0BOB", "replica-a")),
            threading.Thread(target=approve, args=(replica, "U0CAROL", "replica-b")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert stage.real_patches() == 1
        assert stage.replicas() == 0
    finally:
        replica.stop()


def test_an_unapproved_request_expires(stage: Stage, tmp_path: Path) -> None:
    config = yaml.safe_load(Path(stage.bot.env["NEXUS_CONFIG"]).read_text())
    config["approvals"]["expire_after"] = "10s"
    short = tmp_path / "short-expiry.yaml"
    short.write_text(yaml.safe_dump(config))
    stage.bot.stop()
    stage.bot = second_bot(stage, NEXUS_CONFIG=str(short))
    asked = stage.request("scale-to-zero")
    assert "Waiting for a second person" in asked["text"]
    stage.wait_reply("approval.approve")
    stage.wait_reply("expired: nobody approved it in time", timeout=30)
    late = stage.click("approval.approve", {"r": 1}, "U0BOB", "too-late")
    assert "already expired" in late["text"]
    assert stage.real_patches() == 0
    # The step can be requested again once the old request is over.
    again = stage.request("scale-to-zero", user="U0BOB")
    assert "#2" in again["text"]


def test_protected_branch_gets_a_revert_pull_request(stage: Stage) -> None:
    stage.remote.protect("main")
    before = stage.remote.head()
    stage.request("revert-ai-commit")
    stage.wait_reply("approval.approve")
    answer = stage.click("approval.approve", {"r": 1}, "U0BOB", "protected")
    assert "done" in json.dumps(answer["blocks"]), answer
    assert stage.remote.head() == before  # nothing pushed to the protected branch
    assert any(b.startswith("revert/") for b in stage.remote.branches())
    pulls = stage.github.pulls(REPO)
    opened = [p for p in pulls if p.number != 318]
    assert len(opened) == 1 and opened[0].base_ref == "main"
    assert opened[0].head_ref.startswith("revert/")


def test_targets_outside_the_allow_list_are_refused(stage: Stage) -> None:
    hostile = frenly_alert(stage.bad_commit)
    hostile["groupKey"] = '{}:{alertname="FrenlyAIDangerousEdit", hostile="yes"}'
    hostile["alerts"][0]["fingerprint"] = "hostile"
    hostile["alerts"][0]["labels"].update(namespace="kube-system", deployment="coredns")
    hostile["commonLabels"].update(namespace="kube-system", deployment="coredns")
    assert stage.bot.alertmanager(hostile).status_code == 202
    stage.bot.wait_applied()  # 202 is "stored"; incident #2 exists once it is applied
    value = {"p": "frenly-ai-dangerous-edit", "s": "scale-to-zero", "i": 2}
    answer = stage.click("remediation.request.scale-to-zero", value, "U0ALICE", "hostile")
    assert "Refused" in answer["text"] and "kube-system/coredns" in answer["text"]
    assert stage.kube.patches() == []  # not even a dry run
    assert "remediation refused: " in stage.bot.command("timeline 2").json()["text"]


def test_forged_and_replayed_approvals_change_nothing(stage: Stage) -> None:
    forged = stage.click("approval.approve", {"r": 999}, "U0BOB", "forged")
    assert "no remediation #999" in forged["text"]
    junk = stage.bot.click(
        "approval.approve", "not json", user="U0BOB", response_url=stage.slack.response_url("junk")
    )
    assert junk.status_code == 200
    told = stage.slack.wait_for(lambda: stage.slack.responses("junk"), timeout=10)[0]
    assert "not attached to a remediation" in told["text"]
    stage.request("scale-to-zero")
    stage.wait_reply("approval.approve")
    first = stage.click("approval.approve", {"r": 1}, "U0BOB", "first")
    assert "done" in json.dumps(first["blocks"])
    replay = stage.click("approval.approve", {"r": 1}, "U0BOB", "replay")
    assert "already succeeded" in replay["text"]
    assert stage.real_patches() == 1
    # A signed payload is the only way in: a forged signature is refused outright.
    forged_signature = stage.bot.slack(
        {"payload": json.dumps({"type": "block_actions"})}, secret="guess"
    )
    assert forged_signature.status_code == 401
