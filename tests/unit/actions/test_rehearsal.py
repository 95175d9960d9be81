"""build_rehearsal_executors: a rehearsal for every action build_executors builds, from settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.actions.base import ActionError
from bot.actions.catalog import ClosePullRequest, ScaleDeployment
from bot.actions.executors import build_executors
from bot.actions.rehearsal import build_rehearsal_executors
from bot.settings import Settings
from tests.fakes.github import FakeGitHub
from tests.fakes.kubernetes import FakeKubernetes
from tests.unit.actions.actions_git_support import APP_ID, CONTEXT, REPO

DRILL_CONTEXT = dataclasses.replace(CONTEXT, drill_branch="drill/42-step")


@pytest.mark.usefixtures("clean_env")
def test_same_actions_as_build_executors(
    github: FakeGitHub, kubeconfig: Path, tmp_path: Path
) -> None:
    base = {"github_api_url": github.url, "nexus_workdir": tmp_path / "work"}
    for settings in (
        Settings(**base),
        Settings(**base, github_token=SecretStr(github.token)),
        Settings(**base, kubeconfig=str(kubeconfig)),
        Settings(**base, github_token=SecretStr(github.token), kubeconfig=str(kubeconfig)),
    ):
        rehearsals = build_rehearsal_executors(settings)
        assert set(rehearsals) == set(build_executors(settings)[0])
        assert all(name == r.action for name, r in rehearsals.items())
    assert set(rehearsals) == {
        "git.revert",
        "git.restore_path",
        "git.restore_archive",
        "s3.restore_snapshot",
        "github.close_pr",
        "k8s.scale",
        "k8s.rollout_restart",
        "k8s.rollout_undo",
        "k8s.configmap_patch",
        "k8s.run_job",
    }
    assert set(build_rehearsal_executors(Settings(**base))) == {
        "git.revert",
        "git.restore_path",
        "git.restore_archive",
        "s3.restore_snapshot",
    }


@pytest.mark.usefixtures("clean_env")
def test_built_kubernetes_rehearsal_only_dry_runs(
    kube: FakeKubernetes, kubeconfig: Path, tmp_path: Path
) -> None:
    settings = Settings(kubeconfig=str(kubeconfig), nexus_workdir=tmp_path / "work")
    executor = build_rehearsal_executors(settings)["k8s.scale"]
    params = ScaleDeployment(namespace="ai", deployment="frenly-ai", replicas=0)

    result = executor.execute(params, executor.preview(params).snapshot, DRILL_CONTEXT)

    assert result.data["rehearsal"] is True
    assert kube.patches(dry_run=False) == []
    assert kube.deployment("ai", "frenly-ai")["spec"]["replicas"] == 3


@pytest.mark.usefixtures("clean_env")
def test_built_github_app_rehearsal_reads_the_installation_permissions(
    github: FakeGitHub, app_key: tuple[str, str], tmp_path: Path
) -> None:
    github.add_pull(REPO, 7, title="Drop the SSOT plan", head_sha="1" * 40)
    settings = Settings(
        github_api_url=github.url,
        github_app_id=APP_ID,
        github_app_private_key=SecretStr(app_key[0]),
        nexus_workdir=tmp_path / "work",
    )
    executor = build_rehearsal_executors(settings)["github.close_pr"]
    params = ClosePullRequest(repo=REPO, pr=7)
    snapshot = executor.preview(params).snapshot

    result = executor.execute(params, snapshot, DRILL_CONTEXT)
    assert (
        f"the GitHub App's installation on {REPO} has pull_requests: write"
        in (result.data["checks"])
    )

    github.set_permissions(REPO, pull_requests="read")
    with pytest.raises(ActionError, match="pull_requests: read, needs write"):
        executor.execute(params, snapshot, DRILL_CONTEXT)
    assert [c.route for c in github.api_calls() if c.method not in ("GET",)] == [
        f"POST /app/installations/{github.installations[REPO]}/access_tokens"
    ]
    assert github.pull(REPO, 7).state == "open"
