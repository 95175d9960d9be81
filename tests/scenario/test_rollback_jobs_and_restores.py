"""The playbook's remaining rollbacks end to end: its scripts as Jobs from CronJobs,
the snapshot restore from S3 (moto over HTTP) onto a bare repository with the
validation Job after it, through a real bot process with fake Slack and Kubernetes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.kubernetes import FakeKubernetes
from tests.fakes.slack import FakeSlack
from tests.support.bot_process import CHANNEL, REPO_ROOT, BotProcess
from tests.support.s3 import AWS_ENV, S3Server
from tests.unit.actions.actions_git_support import Remote

BUCKET = "nexus-ssot-snapshots"
SNAPSHOT = {
    "ssot_plan/ssot_manifest_proposal.yaml": "anchors: 36\n",
    "ssot_plan/services.yaml": "services: [orders, billing]\n",
}
SYNC_LOG = "\n".join(f"synced service {n}" for n in range(1, 51)) + "\nSSOT in sync\n"


@dataclass
class Stage:
    bot: BotProcess
    slack: FakeSlack
    kube: FakeKubernetes
    remote: Remote

    def thread_text(self) -> str:
        root = self.slack.wait_for(lambda: self.slack.roots(CHANNEL), timeout=30)[0]
        messages = self.slack.thread(CHANNEL, root.ts)
        return "\n".join((m.text or "") + json.dumps(m.blocks) for m in messages)

    def wait_thread(self, needle: str, timeout: float = 30) -> str:
        return str(
            self.slack.wait_for(
                lambda: self.thread_text() if needle in self.thread_text() else None,
                timeout=timeout,
            )
        )

    def click(self, action: str, value: dict[str, Any], user: str, response: str) -> str:
        answer = self.bot.click(
            action, json.dumps(value), user=user, response_url=self.slack.response_url(response)
        )
        assert answer.status_code == 200, answer.text
        return json.dumps(self.slack.wait_for(lambda: self.slack.responses(response), timeout=60))

    def run_step(self, playbook: str, step: str) -> str:
        """Request as Alice, approve as Bob; the approver's answer (the decided card)."""
        asked = self.click(
            f"remediation.request.{step}", {"p": playbook, "s": step, "i": 1}, "U0ALICE", step
        )
        assert "Waiting for a second person" in asked, asked
        request_id = self.slack.wait_for(
            lambda: self.bot.scalar(
                f"SELECT max(id) FROM remediation_requests WHERE step_id = '{step}'"
            ),
            timeout=30,
        )
        return self.click("approval.approve", {"r": request_id}, "U0BOB", f"ok-{step}")


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture
def stage(
    sqlite_url: str, tmp_path: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stage]:
    s3_server.use(monkeypatch)
    remote = Remote(tmp_path / "git", "nexus/ssot", tmp_path / "scratch")
    remote.commit({"ssot_plan/ssot_manifest_proposal.yaml": "anchors: 36\n"}, "Anchors v36")
    remote.commit({"ssot_plan/ssot_manifest_proposal.yaml": "# lost\n"}, "Oops: anchors lost")
    with FakeSlack() as slack, FakeKubernetes() as kube:
        for name, script in (
            ("ssot-sync", "scripts/sync_services_ssot.py"),
            ("ssot-reset", "scripts/reset_to_ssot.py"),
            ("ssot-validate", "scripts/validate_ssot.py"),
        ):
            kube.add_cronjob("nexus", name, command=["python", script])
        kube.auto_finish_jobs(succeeded=True, exit_code=0, log=SYNC_LOG)
        bot = BotProcess(
            sqlite_url,
            slack.url,
            slack.token or "",
            NEXUS_CONFIG=str(REPO_ROOT / "config" / "nexus.yaml"),
            KUBECONFIG=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
            GITHUB_GIT_URL=f"file://{tmp_path / 'git'}",
            NEXUS_WORKDIR=str(tmp_path / "work"),
            NEXUS_APPROVERS="U0BOB",
            S3_ENDPOINT_URL=s3_server.url,
            S3_ADDRESSING_STYLE="path",
            **AWS_ENV,
        ).start()
        try:
            yield Stage(bot, slack, kube, remote)
        finally:
            bot.stop()
            print(bot.stderr[-20000:])


def _alert(labels: dict[str, str], title: str) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{labels["alertname"]}"}}',
        "status": "firing",
        "receiver": "nexus",
        "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels,
        "commonAnnotations": {"summary": title},
        "externalURL": "http://alertmanager.local",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": title},
                "startsAt": "2026-11-30T06:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local/graph",
                "fingerprint": "d1f7a0c0ffee0001",
            }
        ],
    }


def test_configuration_drift_runs_both_scripts_as_jobs_from_their_cronjobs(stage: Stage) -> None:
    labels = {"alertname": "SSOTConfigDrift", "severity": "warning", "anchor": "v37"}
    assert stage.bot.alertmanager(_alert(labels, "SSOT configuration drift")).status_code == 202
    stage.wait_thread("remediation.request.reset-to-baseline")
    assert "Force synchronization" in stage.thread_text()

    done = stage.run_step("configuration-drift", "force-sync")
    assert "completed" in done and "exit code 0" in done, done
    done = stage.run_step("configuration-drift", "reset-to-baseline")
    assert "completed" in done, done

    jobs = {job["metadata"]["labels"]["nexus.bot/request"]: job for job in stage.kube.jobs("nexus")}
    assert len(jobs) == 2
    by_cronjob = {job["metadata"]["ownerReferences"][0]["name"]: job for job in jobs.values()}
    assert set(by_cronjob) == {"ssot-sync", "ssot-reset"}
    for cronjob, args in (("ssot-sync", ["--force"]), ("ssot-reset", ["--anchor", "v37"])):
        job = by_cronjob[cronjob]
        owner = job["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "CronJob" and owner["controller"] is True
        assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == args
        assert container["command"][1].startswith("scripts/")
    # The log's last lines are in the thread, the first ones are not (40-line tail).
    text = stage.wait_thread("SSOT in sync")
    assert "synced service 50" in text and "synced service 5\\n" not in text


def test_lost_canonical_files_restore_the_s3_snapshot_then_validate(
    stage: Stage, s3_server: S3Server
) -> None:
    s3_server.upload_snapshot(BUCKET, "latest/", SNAPSHOT)
    s3_server.upload_snapshot(BUCKET, "2026-11-29T10-00-00Z/", {"ssot_plan/old.yaml": "x: 1\n"})
    labels = {
        "alertname": "SSOTCanonicalFilesMissing",
        "severity": "critical",
        "repo": "nexus/ssot",
        "commit": "HEAD~1",
    }
    assert stage.bot.alertmanager(_alert(labels, "Canonical SSOT files missing")).status_code == 202
    stage.wait_thread("remediation.request.restore-from-snapshot")

    done = stage.run_step("lost-canonical-files", "restore-from-snapshot")
    assert "Verification (Verify integrity) passed" in done, done

    # The bare repository's main now holds exactly the snapshot's ssot_plan/.
    assert stage.remote.files(path="ssot_plan") == sorted(SNAPSHOT)
    for path, content in SNAPSHOT.items():
        assert stage.remote.file(path) == content
    assert f"{BUCKET}/latest" in stage.remote.message()
    # The validation Job ran after it, from its CronJob, with the manifest path.
    [job] = stage.kube.jobs("nexus")
    assert job["metadata"]["ownerReferences"][0]["name"] == "ssot-validate"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["ssot_plan/ssot_manifest_proposal.yaml"]
    stage.wait_thread("Verification (Verify integrity) passed")


def test_a_tampered_snapshot_is_refused_and_nothing_is_pushed(
    stage: Stage, s3_server: S3Server
) -> None:
    s3_server.upload_snapshot(
        BUCKET, "latest/", SNAPSHOT, manifest={**SNAPSHOT, "ssot_plan/services.yaml": "evil\n"}
    )
    head = stage.remote.head()
    labels = {"alertname": "SSOTCanonicalFilesMissing", "severity": "critical"}
    assert stage.bot.alertmanager(_alert(labels, "Canonical SSOT files missing")).status_code == 202
    stage.wait_thread("remediation.request.restore-from-snapshot")
    asked = stage.click(
        "remediation.request.restore-from-snapshot",
        {"p": "lost-canonical-files", "s": "restore-from-snapshot", "i": 1},
        "U0ALICE",
        "tampered",
    )
    assert "checksum" in asked, asked
    assert stage.remote.head() == head
    assert stage.kube.jobs("nexus") == []
