"""Publishing a git executor's commit: to its branch, or a side branch and a pull request.

A push the server refuses (protected branch, non-fast-forward) falls back to a
side branch and a pull request when GitHub credentials are configured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.actions.base import ActionError, ActionUnavailable
from bot.actions.git_workspace import Checkout, GitWorkspace

if TYPE_CHECKING:
    from bot.actions.github import PullRequests


@dataclass(frozen=True)
class Published:
    pushed_to: str
    pr_url: str | None
    refused: str | None  # why the push to the branch itself was refused, if it was


def publish(
    workspace: GitWorkspace,
    checkout: Checkout,
    pulls: PullRequests | None,
    *,
    want_pr: bool,
    side_branch: str,
    title: str,
    body: str,
) -> Published:
    """Push to the branch, or (asked for, or refused) to a side branch with a pull request."""
    branch = checkout.branch
    refused = None
    if not want_pr:
        refused = workspace.push(checkout, f"refs/heads/{branch}")
        if refused is None:
            return Published(branch, None, None)
        if pulls is None:
            raise ActionError(
                f"The push to {branch} was rejected ({refused}); nothing was pushed. "
                "Opening a pull request instead needs GitHub credentials "
                "(GITHUB_TOKEN or GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY)."
            )
    elif pulls is None:
        raise ActionUnavailable("a pull request needs GitHub credentials; nothing was pushed")
    side_refused = workspace.push(checkout, f"refs/heads/{side_branch}")
    if side_refused is not None:
        raise ActionError(f"The push to {side_branch} was rejected too ({side_refused}).")
    url = pulls.open_pull_request(checkout.repo, side_branch, branch, title, body)
    return Published(side_branch, url, refused)


def commit_and_publish(
    workspace: GitWorkspace,
    checkout: Checkout,
    pulls: PullRequests | None,
    *,
    message: str,
    title: str,
    want_pr: bool,
    side_branch: Callable[[str], str],
    incident: str,
) -> tuple[str, Published]:
    """Commit what is staged with `message`, then publish it (see `publish`).

    `side_branch` names the pull request's branch from the new commit's SHA;
    `incident` ("#12: title") ends the pull request's body.
    """
    checkout.git("commit", "--quiet", "--file=-", stdin=message)
    new_sha = checkout.git("rev-parse", "HEAD").stdout.strip()
    published = publish(
        workspace,
        checkout,
        pulls,
        want_pr=want_pr,
        side_branch=side_branch(new_sha),
        title=title,
        body=f"{message}\nOpened by the NEXUS incident bot for incident {incident}",
    )
    return new_sha, published


def result_links(workspace: GitWorkspace, repo: str, sha: str, published: Published) -> list[str]:
    if published.pr_url:
        return [published.pr_url]
    web = workspace.web_url(repo)
    return [f"{web}/commit/{sha}"] if web else []


def where_pushed(published: Published, branch: str) -> str:
    if published.pr_url is None:
        return f"pushed to {branch}"
    why = f" (the push to {branch} was rejected: {published.refused})" if published.refused else ""
    return f"pushed to {published.pushed_to}, pull request {published.pr_url}{why}"
