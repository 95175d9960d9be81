"""Build the executors this deployment can run, from its settings.

An executor whose credentials are missing is left out and named once at
start-up; the approval flow then refuses that action with the reason instead
of failing at 3 a.m.
"""

from __future__ import annotations

from bot.actions.base import ActionUnavailable, Executor
from bot.actions.git import GitWorkspace, RestorePathExecutor, RevertExecutor
from bot.actions.git_archive import RestoreArchiveExecutor
from bot.actions.github import ClosePullRequestExecutor, GitHubConnector, PullRequests
from bot.actions.kubernetes import (
    ConfigMapPatchExecutor,
    RolloutRestartExecutor,
    RolloutUndoExecutor,
    ScaleExecutor,
    kube_api_client,
)
from bot.actions.kubernetes_jobs import RunJobExecutor
from bot.actions.s3_snapshot import RestoreSnapshotExecutor
from bot.actions.s3_store import s3_client_from_settings
from bot.settings import Settings


def build_executors(settings: Settings) -> tuple[dict[str, Executor], list[str]]:
    """(executors by action name, one line per action family that is unavailable)."""
    executors: list[Executor] = []
    unavailable: list[str] = []
    connector = GitHubConnector.from_settings(settings)
    pulls = PullRequests(connector) if connector else None
    workspace = GitWorkspace(
        settings.github_git_url,
        settings.nexus_workdir,
        token=connector.git_token if connector else None,
    )
    executors += [
        RevertExecutor(workspace, pulls),
        RestorePathExecutor(workspace, pulls),
        RestoreArchiveExecutor(workspace, pulls),
        # The S3 client is built per use: missing AWS config must not stop start-up.
        RestoreSnapshotExecutor(workspace, pulls, lambda: s3_client_from_settings(settings)),
    ]
    if connector is not None:
        executors.append(ClosePullRequestExecutor(connector))
    else:
        unavailable.append("github.close_pr: no GitHub credentials (GITHUB_TOKEN or GitHub App)")
    try:
        api = kube_api_client(settings.kubeconfig)
    except ActionUnavailable as exc:
        unavailable.append(f"k8s.*: {exc}")
    else:
        executors += [
            RunJobExecutor(api),
            ScaleExecutor(api),
            RolloutRestartExecutor(api),
            RolloutUndoExecutor(api),
            ConfigMapPatchExecutor(api),
        ]
    return {executor.action: executor for executor in executors}, unavailable
