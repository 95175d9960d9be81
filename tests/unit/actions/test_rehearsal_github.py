"""Rehearsed github.close_pr on the fake GitHub: checks, permissions, nothing posted or closed."""

from __future__ import annotations

import dataclasses

import pytest

from bot.actions.base import ActionError, TargetChanged
from bot.actions.catalog import ClosePullRequest
from bot.actions.github import GitHubConnector
from bot.actions.rehearsal_github import ClosePullRequestRehearsal
from tests.fakes.github import FakeGitHub
from tests.unit.actions.actions_git_support import CONTEXT, REPO

HEAD = "1" * 40
DRILL_CONTEXT = dataclasses.replace(CONTEXT, drill_branch="drill/42-close-pr")
PARAMS = ClosePullRequest(repo=REPO, pr=7, comment="Rejected: Dangerous change detected")


@pytest.fixture
def pr(github: FakeGitHub) -> int:
    github.add_pull(REPO, 7, title="Drop the SSOT plan", head_sha=HEAD, user="mallory")
    return 7


def writes(github: FakeGitHub) -> list[str]:
    return [c.route for c in github.api_calls() if c.method != "GET"]


def test_rehearsal_checks_and_neither_comments_nor_closes(
    connector: GitHubConnector, github: FakeGitHub, pr: int
) -> None:
    executor = ClosePullRequestRehearsal(connector)
    assert executor.action == "github.close_pr"
    preview = executor.preview(PARAMS)
    assert preview.summary.startswith("Close acme/ssot#7")  # the real preview

    result = executor.execute(PARAMS, preview.snapshot, DRILL_CONTEXT)

    assert writes(github) == []  # no comment POST, no PATCH of the pull
    assert github.pull(REPO, 7).state == "open"
    assert github.pull(REPO, 7).comments == []
    assert f"GET /repos/{REPO}" in [c.route for c in github.api_calls()]  # permissions read
    assert result.data["rehearsal"] is True
    assert result.data["checks"] == [
        f"{REPO}#7 re-read: still open, not merged, head {HEAD[:12]} as previewed",
        f"the token's account has push permission on {REPO}",
    ]
    assert result.summary == (
        f'Would work: the bot may comment on and close {REPO}#7 "Drop the SSOT plan" '
        "(nothing was posted or closed)"
    )
    assert result.undo is None


def test_without_push_permission_it_would_not_have_worked(
    connector: GitHubConnector, github: FakeGitHub, pr: int
) -> None:
    github.set_permissions(REPO, push=False, triage=False)
    executor = ClosePullRequestRehearsal(connector)
    preview = executor.preview(PARAMS)

    with pytest.raises(ActionError) as error:
        executor.execute(PARAMS, preview.snapshot, DRILL_CONTEXT)

    assert str(error.value) == (
        f"Would not have worked: the token cannot close pull requests on {REPO} "
        "(no push permission)"
    )
    assert writes(github) == []


def test_merged_or_moved_pull_requests_stop_the_rehearsal_like_execute(
    connector: GitHubConnector, github: FakeGitHub, pr: int
) -> None:
    executor = ClosePullRequestRehearsal(connector)
    preview = executor.preview(PARAMS)

    github.pull(REPO, 7).head_sha = "2" * 40
    with pytest.raises(TargetChanged, match="new commits were pushed"):
        executor.execute(PARAMS, preview.snapshot, DRILL_CONTEXT)
    github.pull(REPO, 7).merged = True
    with pytest.raises(TargetChanged, match="was merged: closing it would not undo it"):
        executor.execute(PARAMS, preview.snapshot, DRILL_CONTEXT)
    github.pull(REPO, 7).merged, github.pull(REPO, 7).state = False, "closed"
    with pytest.raises(TargetChanged, match="already closed"):
        executor.execute(PARAMS, preview.snapshot, DRILL_CONTEXT)
    assert writes(github) == []
