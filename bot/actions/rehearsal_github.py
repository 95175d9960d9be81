"""Rehearsed ``github.close_pr``: the real re-read and checks, then a permission check.

Nothing is posted and nothing is closed. Whether the bot *could* close the pull
request is read from GitHub instead: for a token, the repository's
``permissions`` (push, triage, maintain or admin may close pull requests); for a
GitHub App, its installation's ``pull_requests: write``.
"""

from __future__ import annotations

from typing import Any

from github import GithubIntegration

from bot.actions.base import (
    ActionError,
    ExecutionContext,
    ExecutionResult,
    TargetChanged,
)
from bot.actions.catalog import ClosePullRequest
from bot.actions.github import ClosePullRequestExecutor, GitHubConnector, _github_errors
from bot.actions.registry import ActionParams

# The repository roles that may close someone else's pull request.
_CLOSING_ROLES = ("admin", "maintain", "push", "triage")


class ClosePullRequestRehearsal(ClosePullRequestExecutor):
    """The real preview; an execution that checks, and comments on and closes nothing.

    ``app`` is the GitHub App (when the connector authenticates as one), to read
    its installation's permissions; None for a token.
    """

    def __init__(self, connector: GitHubConnector, app: GithubIntegration | None = None) -> None:
        super().__init__(connector)
        self._app = app

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        if not isinstance(params, ClosePullRequest):
            raise TypeError(f"expected ClosePullRequest, got {type(params).__name__}")
        ref = f"{params.repo}#{params.pr}"
        with _github_errors(f"reading {ref}"):
            pr = self._pull(params)
            merged, state, head_sha, title = pr.merged, pr.state, pr.head.sha, pr.title
        # The same checks, in the same order, as ClosePullRequestExecutor.execute.
        if merged:
            raise TargetChanged(
                f"Rehearsal stopped: {ref} was merged: closing it would not undo it — "
                "revert the merge commit instead (git.revert)"
            )
        if state != "open":
            raise TargetChanged(f"Rehearsal stopped: {ref} is already closed, nothing done")
        seen = snapshot.get("head_sha")
        if head_sha != seen:
            raise TargetChanged(
                f"Rehearsal stopped: new commits were pushed to {ref} since the preview "
                f"({str(seen)[:12]} → {head_sha[:12]}); nothing was done. Preview again."
            )
        checks = [
            f"{ref} re-read: still open, not merged, head {head_sha[:12]} as previewed",
            self._may_close(params.repo),
        ]
        return ExecutionResult(
            summary=f'Would work: the bot may comment on and close {ref} "{title}" '
            "(nothing was posted or closed)",
            details=[
                *(f"Checked: {check}" for check in checks),
                f"Nothing was posted on {ref} and it is still open",
            ],
            links=[pr.html_url],
            data={"rehearsal": True, "checks": checks, "pr": params.pr, "head_sha": head_sha},
        )

    def _may_close(self, repo: str) -> str:
        """The check that passed; ActionError when the credentials cannot close pull requests."""
        if self._app is not None:
            owner, name = repo.split("/", 1)
            with _github_errors(f"reading the GitHub App's installation on {repo}"):
                granted = self._app.get_repo_installation(owner, name).permissions or {}
            level = granted.get("pull_requests", "none")
            if level != "write":
                raise ActionError(
                    f"Would not have worked: the GitHub App cannot close pull requests on {repo} "
                    f"(its installation has pull_requests: {level}, needs write)"
                )
            return f"the GitHub App's installation on {repo} has pull_requests: write"
        assert self.connector is not None
        with _github_errors(f"reading the token's permissions on {repo}"):
            # The client is lazy: reading .permissions fetches GET /repos/{repo}.
            permissions = self.connector.client(repo).get_repo(repo).permissions
        roles = [r for r in _CLOSING_ROLES if permissions and getattr(permissions, r, False)]
        if not roles:
            raise ActionError(
                f"Would not have worked: the token cannot close pull requests on {repo} "
                "(no push permission)"
            )
        # The role is the account's: a fine-grained token's own narrower scopes are not shown.
        return f"the token's account has {roles[0]} permission on {repo}"
