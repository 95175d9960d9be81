"""Rehearsal executors for recovery drills: every action, run so that nothing real changes.

A drill's approved step goes to the rehearsal executor of its action instead of
the real one. Its ``preview`` is the real, read-only preview; its ``execute``
runs the real checks and tells whether the step *would have worked*:

* ``k8s.*`` (`bot.actions.rehearsal_kubernetes`): the real execution with every
  write a server-side dry run (``dryRun=All``);
* ``git.revert``, ``git.restore_path`` (`bot.actions.rehearsal_git`): the real
  revert or restore, pushed only to ``context.drill_branch``, then deleted;
* ``github.close_pr`` (`bot.actions.rehearsal_github`): the real re-read and
  checks, then the credentials' permission to close, without commenting.

A successful rehearsal's ``data`` carries ``rehearsal: True`` and ``checks``
(what was verified, in words); one that would not have worked raises an
``ActionError`` saying why. No rehearsal offers an undo.

The same actions are available as in `bot.actions.executors.build_executors`:
no GitHub credentials, no ``github.close_pr``; no Kubernetes credentials, no ``k8s.*``.
"""

from __future__ import annotations

from github import Auth, GithubIntegration

from bot.actions.base import ActionUnavailable, Executor
from bot.actions.git import GitWorkspace, RestorePathExecutor, RevertExecutor
from bot.actions.git_archive import RestoreArchiveExecutor
from bot.actions.github import DEFAULT_TIMEOUT, GitHubConnector, PullRequests
from bot.actions.kubernetes import kube_api_client
from bot.actions.rehearsal_git import DrillWorkspace, GitExecutorClass, GitRehearsal
from bot.actions.rehearsal_github import ClosePullRequestRehearsal
from bot.actions.rehearsal_kubernetes import kube_rehearsals, run_job_rehearsal
from bot.actions.s3_snapshot import RestoreSnapshotExecutor
from bot.actions.s3_store import s3_client_from_settings
from bot.settings import Settings


def build_rehearsal_executors(settings: Settings) -> dict[str, Executor]:
    """A rehearsal executor for every action `build_executors` can build, by action name."""
    executors: list[Executor] = []
    connector = GitHubConnector.from_settings(settings)
    pulls = PullRequests(connector) if connector else None
    token = connector.git_token if connector else None
    workspace = GitWorkspace(settings.github_git_url, settings.nexus_workdir, token=token)

    def drill_workspace(branch: str) -> DrillWorkspace:
        return DrillWorkspace(branch, settings.github_git_url, settings.nexus_workdir, token=token)

    open_prs = settings.drills.open_pull_requests

    def snapshot_executor(ws: GitWorkspace, pulls: PullRequests | None) -> Executor:
        return RestoreSnapshotExecutor(ws, pulls, lambda: s3_client_from_settings(settings))

    kinds: list[GitExecutorClass] = [
        RevertExecutor,
        RestorePathExecutor,
        RestoreArchiveExecutor,
        snapshot_executor,
    ]
    for executor in kinds:
        executors.append(
            GitRehearsal(executor, workspace, drill_workspace, pulls, open_pull_requests=open_prs)
        )
    if connector is not None:
        executors.append(ClosePullRequestRehearsal(connector, _github_app(settings)))
    try:
        api = kube_api_client(settings.kubeconfig)
    except ActionUnavailable:
        pass  # build_executors names it at start-up
    else:
        executors += [*kube_rehearsals(api), run_job_rehearsal(api)]
    return {executor.action: executor for executor in executors}


def _github_app(settings: Settings) -> GithubIntegration | None:
    """The GitHub App the connector authenticates as, if it does (a token wins, as there)."""
    if settings.github_token and settings.github_token.get_secret_value():
        return None
    key = settings.github_app_private_key
    if settings.github_app_id is None or key is None:
        return None
    return GithubIntegration(
        auth=Auth.AppAuth(settings.github_app_id, key.get_secret_value()),
        base_url=settings.github_api_url.rstrip("/"),
        timeout=DEFAULT_TIMEOUT,
        retry=None,
    )
