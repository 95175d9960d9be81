"""Rehearsed git actions: the real revert/restore, published only to a throw-away drill branch.

A rehearsal runs the real executor's ``execute`` (the same checks, the same
``git revert`` or ``git checkout`` in a throw-away clone, the same commit) over
a `DrillWorkspace`. That workspace hands the executor clones that stand on the
drill branch (``drill/12-revert-commit``), so the executor's own publish step
pushes there; and its ``push`` refuses every other ref, so whatever the
executor tries, a real branch is never pushed by a rehearsal. The drill branch
proves the bot may push to the repository; it is deleted before the rehearsal
returns. No pull request is opened, unless ``drills.open_pull_requests`` asks
for one: then it is opened from the drill branch and closed again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.actions.base import (
    ActionError,
    ExecutionContext,
    ExecutionResult,
    Executor,
    Preview,
)
from bot.actions.catalog import RestoreArchive, RestorePath, RestoreSnapshot, RevertCommit
from bot.actions.git_workspace import Checkout, GitWorkspace, TokenSource
from bot.actions.github import PullRequests, _github_errors
from bot.actions.registry import ActionParams
from bot.actions.rehearsal_base import RehearsalRefused, would_not_have_worked

DRILL_PREFIX = "drill/"
# A narrow branch name under drill/: no "..", no trailing "." or ".lock" (git's rules).
_DRILL_BRANCH = re.compile(r"drill/[A-Za-z0-9_][A-Za-z0-9._-]{0,99}(?<![.])(?<!\.lock)")


def drill_branch_of(context: ExecutionContext) -> str:
    """The context's drill branch, refused unless it is a plain name under drill/."""
    branch = context.drill_branch
    if branch is None:
        raise RehearsalRefused("a rehearsal needs a drill branch to push to; nothing was done")
    if not _DRILL_BRANCH.fullmatch(branch) or ".." in branch:
        raise RehearsalRefused(
            "a rehearsal pushes only to a branch like drill/12-revert-commit, "
            f"not {branch[:80]!r}; nothing was done"
        )
    return branch


class DrillWorkspace(GitWorkspace):
    """A workspace for one rehearsal: its clones stand on the drill branch, and it pushes
    nowhere else."""

    def __init__(
        self, drill_branch: str, git_base_url: str, workdir: Path, token: TokenSource = None
    ) -> None:
        super().__init__(git_base_url, workdir, token=token)
        if not _DRILL_BRANCH.fullmatch(drill_branch) or ".." in drill_branch:
            raise RehearsalRefused(f"not a drill branch: {drill_branch[:80]!r}")
        self.drill_branch = drill_branch
        self.pushed = False  # the drill branch exists on the remote because we pushed it

    @contextlib.contextmanager
    def checkout(self, repo: str, branch: str) -> Iterator[Checkout]:
        with super().checkout(repo, branch) as co:
            if self.rev(self.mirror_path(repo), f"refs/heads/{self.drill_branch}") is not None:
                raise RehearsalRefused(
                    f"the drill branch {self.drill_branch} already exists on {repo} (left by an "
                    "earlier rehearsal?); delete it, then rehearse again. Nothing was done"
                )
            # The executor publishes to its checkout's branch: here, the drill branch.
            # Its checks ran against the real branch's head (co.head), as in a real run.
            yield dataclasses.replace(co, branch=self.drill_branch)

    def push(self, checkout: Checkout, ref: str) -> str | None:
        """Push HEAD to the drill branch; any other ref is refused, a rejection is an error."""
        wanted = f"refs/heads/{self.drill_branch}"
        if ref != wanted:
            raise RehearsalRefused(
                f"a rehearsal pushes only to {wanted}; refused to push {ref[:120]}"
            )
        refused = super().push(checkout, ref)
        if refused is not None:
            raise ActionError(
                f"the push to the drill branch {self.drill_branch} of {checkout.repo} was "
                f"rejected ({refused}): the bot cannot push to {checkout.repo}"
            )
        self.pushed = True
        return None

    def delete_drill_branch(self, repo: str) -> str | None:
        """Delete the drill branch on the remote: None when gone, else why not."""
        try:
            proc = self.run(
                self.mirror_path(repo),  # any repository can push a deletion
                "push",
                "--porcelain",
                "--",
                self.remote_url(repo),
                f":refs/heads/{self.drill_branch}",
                check=False,
                remote_repo=repo,
            )
        except ActionError as exc:  # timeout
            return str(exc)
        if proc.returncode != 0:
            return self.redact(proc.stderr or proc.stdout) or f"exit status {proc.returncode}"
        self.pushed = False
        return None


GitExecutorClass = Callable[[GitWorkspace, PullRequests | None], Executor]
GitParams = RevertCommit | RestorePath | RestoreArchive | RestoreSnapshot


@dataclass
class _Outcome:
    checks: list[str]
    details: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


class GitRehearsal:
    """``git.revert`` or ``git.restore_path`` rehearsed on a drill branch."""

    def __init__(
        self,
        executor: GitExecutorClass,
        workspace: GitWorkspace,
        drill_workspace: Callable[[str], DrillWorkspace],
        pulls: PullRequests | None = None,
        *,
        open_pull_requests: bool = False,
    ) -> None:
        self._executor = executor
        self._real = executor(workspace, pulls)  # previews only
        self.action = self._real.action
        self._drill_workspace = drill_workspace
        self._pulls = pulls
        self._open_pull_requests = open_pull_requests

    def preview(self, params: ActionParams) -> Preview:
        return self._real.preview(params)

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        if not isinstance(params, GitParams):
            raise TypeError(f"expected git parameters, got {type(params).__name__}")
        branch = drill_branch_of(context)
        ws = self._drill_workspace(branch)
        if not isinstance(params, RestorePath) and params.mode != "push":
            # The drill branch stands in for both the branch and a revert PR's side
            # branch; a pull request is rehearsed below when asked for.
            params = params.model_copy(update={"mode": "push"})
        # No PullRequests: the executor itself can never open a pull request here.
        rehearsed = self._executor(ws, None)
        try:
            done = rehearsed.execute(params, snapshot, context)
        except ActionError as exc:
            if ws.pushed:  # not expected: the push is the executor's last step
                ws.delete_drill_branch(params.repo)
            raise would_not_have_worked(exc) from None
        outcome = _Outcome(_git_checks(params, done, branch))
        failure: ActionError | None = None
        if self._open_pull_requests:
            try:
                self._pull_request_round_trip(params, branch, context, outcome)
            except ActionError as exc:
                failure = exc
        left = ws.delete_drill_branch(params.repo)
        if left is None:
            outcome.checks.append(f"drill branch {branch} deleted")
        else:
            outcome.details.append(f"The drill branch {branch} could NOT be deleted: {left}")
            outcome.data["drill_branch_left"] = branch
        if failure is not None:
            gone = "" if left is None else f" (and the drill branch {branch} is left: {left})"
            raise ActionError(f"{would_not_have_worked(failure)}{gone}")
        return self._result(params, branch, done, outcome, deleted=left is None)

    def _result(
        self,
        params: GitParams,
        branch: str,
        done: ExecutionResult,
        outcome: _Outcome,
        *,
        deleted: bool,
    ) -> ExecutionResult:
        where = f"{params.repo}@{params.branch}"
        if isinstance(params, RevertCommit):
            what = f"revert {str(done.data['reverted_sha'])[:12]} on {where} applies cleanly"
        elif not isinstance(params, RestorePath):
            what = f"{self.action} of {params.path} on {where} ({_restored(done)})"
        else:
            what = (
                f"restore {params.path} on {where} to {str(done.data['restored_from'])[:12]} "
                f"({done.data['files_changed']} file(s))"
            )
        after = "since deleted" if deleted else "which could NOT be deleted"
        return ExecutionResult(
            summary=f"Would work: {what}, and the bot can push (rehearsed on {branch}, {after})",
            details=[
                *(f"Checked: {check}" for check in outcome.checks),
                *outcome.details,
                f"Not checked: whether {params.branch} itself accepts the bot's push (branch "
                "protection); if it refuses, the real step falls back to a pull request",
                f"Nothing was pushed to {params.branch}",
            ],
            data={
                "rehearsal": True,
                "checks": outcome.checks,
                "drill_branch": branch,
                "drill_branch_deleted": deleted,
                "would_have": done.data,
                **outcome.data,
            },
        )

    def _pull_request_round_trip(
        self,
        params: GitParams,
        branch: str,
        context: ExecutionContext,
        outcome: _Outcome,
    ) -> None:
        """Open a pull request from the drill branch, then close it (drills.open_pull_requests)."""
        if self._pulls is None:
            outcome.details.append("No pull request rehearsed: no GitHub credentials")
            return
        title = f"[DRILL] {self.action} rehearsal for incident #{context.incident_number}"
        body = (
            "Opened and closed by the NEXUS incident bot in a recovery drill "
            f"({context.incident_title}); nothing to review."
        )
        url = self._pulls.open_pull_request(params.repo, branch, params.branch, title, body)
        outcome.checks.append(f"pull request opened from the drill branch: {url}")
        outcome.data["drill_pr_url"] = url
        try:
            number = int(url.rstrip("/").rsplit("/", 1)[-1])
            with _github_errors(f"closing the drill pull request {url}"):
                remote = self._pulls.connector.client(params.repo).get_repo(params.repo)
                remote.get_pull(number).edit(state="closed")
        except (ActionError, ValueError) as exc:
            outcome.details.append(f"The drill pull request {url} could NOT be closed: {exc}")
            outcome.data["drill_pr_left_open"] = url
        else:
            outcome.checks.append("drill pull request closed")


def _git_checks(params: GitParams, done: ExecutionResult, branch: str) -> list[str]:
    """What the real execution verified before it pushed, in the order it did."""
    if isinstance(params, RevertCommit):
        sha = str(done.data["reverted_sha"])[:12]
        checks = [
            f"commit {sha} found on {params.branch}, not reverted yet",
            f"revert applied cleanly (no conflicts): commit {str(done.data['revert_sha'])[:12]}",
        ]
    elif not isinstance(params, RestorePath):
        checks = [
            f"source unchanged since the preview, checks passed ({_restored(done)})",
            f"{params.path} restored: commit {str(done.data['commit_sha'])[:12]}",
        ]
    else:
        source = str(done.data["restored_from"])[:12]
        checks = [
            f"{params.path} on {params.branch} unchanged since the preview; {source} still exists",
            f"{params.path} restored as of {source}: commit {str(done.data['commit_sha'])[:12]} "
            f"changes {done.data['files_changed']} file(s)",
        ]
    checks.append(f"push permission verified by pushing the drill branch {branch}")
    return checks


def _restored(done: ExecutionResult) -> str:
    data = done.data
    if "files_added" in data:  # s3.restore_snapshot
        return (
            f"{data['files_added']} added, {data['files_changed']} changed, "
            f"{data['files_deleted']} deleted"
        )
    return f"{data['files_changed']} file(s) changed"
