"""git.revert against real bare repositories: preview, guarded execution, push or pull request."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.actions.base import ActionError, ActionUnavailable, TargetChanged
from bot.actions.catalog import RevertCommit
from bot.actions.git_revert import RevertExecutor
from bot.actions.git_workspace import GitWorkspace
from bot.actions.github import PullRequests
from tests.fakes.github import FakeGitHub
from tests.unit.actions.actions_git_support import CONTEXT, TRAILER, Remote, git

REPO = "acme/ssot"


def bad_commit(remote: Remote) -> str:
    return remote.commit({"ssot_plan/a.yaml": "a: 2  # wrong\n"}, "Bump a to 2")


def test_revert_a_commit_and_push(remote: Remote, workspace: GitWorkspace) -> None:
    bad = bad_commit(remote)
    remote.commit({"README.md": "ssot, later\n"}, "Unrelated later change")
    executor = RevertExecutor(workspace, None)
    params = RevertCommit(repo=REPO, commit=bad[:8])

    preview = executor.preview(params)
    assert preview.summary.startswith(f'Revert {bad[:12]} "Bump a to 2" on acme/ssot@main')
    assert preview.snapshot["sha"] == bad
    assert preview.snapshot["branch_head"] == remote.head()
    assert any("Dev <dev@example.com>" in line for line in preview.details)
    assert any("ssot_plan/a.yaml" in line and "|" in line for line in preview.details)

    result = executor.execute(params, preview.snapshot, CONTEXT)
    new = result.data["revert_sha"]
    assert remote.head() == new
    assert remote.file("ssot_plan/a.yaml") == "a: 1\n"
    assert remote.file("README.md") == "ssot, later\n"  # only the bad commit is undone
    message = remote.message()
    assert message.startswith('Revert "Bump a to 2"')
    assert f"This reverts commit {bad}." in message
    assert message.rstrip().endswith(TRAILER)
    assert remote.author() == "NEXUS incident bot <nexus-bot@localhost>"
    assert result.data["pushed_to"] == "main"
    assert result.data["pr_url"] is None
    assert result.links == []  # file:// has no web pages
    assert bad[:12] in result.summary


def test_revert_a_merge_commit_against_its_first_parent(
    remote: Remote, workspace: GitWorkspace
) -> None:
    remote.commit({"ssot_plan/c.yaml": "c: 1\n"}, "Add c", branch="feature")
    remote.commit({"README.md": "main moved\n"}, "Main moves on")
    merge = remote.merge("feature", "Merge feature")
    executor = RevertExecutor(workspace)
    params = RevertCommit(repo=REPO, commit=merge)

    preview = executor.preview(params)
    assert len(preview.snapshot["parents"]) == 2
    assert any("-m 1" in line for line in preview.details)
    assert any("ssot_plan/c.yaml" in line for line in preview.details)

    executor.execute(params, preview.snapshot, CONTEXT)
    assert remote.file("ssot_plan/c.yaml") is None
    assert remote.file("README.md") == "main moved\n"
    assert f"This reverts commit {merge}" in remote.message()


def test_conflicting_revert_pushes_nothing_and_names_the_files(
    remote: Remote, workspace: GitWorkspace
) -> None:
    bad = bad_commit(remote)
    remote.commit({"ssot_plan/a.yaml": "a: 3\n"}, "Bump a to 3")
    head = remote.head()
    executor = RevertExecutor(workspace)
    params = RevertCommit(repo=REPO, commit=bad)
    preview = executor.preview(params)

    with pytest.raises(ActionError) as error:
        executor.execute(params, preview.snapshot, CONTEXT)
    assert not isinstance(error.value, TargetChanged)
    assert "conflicts" in str(error.value)
    assert "ssot_plan/a.yaml" in str(error.value)
    assert "Nothing was pushed" in str(error.value)
    assert remote.head() == head
    assert remote.branches() == ["main"]


def test_protected_branch_falls_back_to_a_pull_request(
    remote: Remote, workspace: GitWorkspace, github: FakeGitHub, pulls: PullRequests
) -> None:
    bad = bad_commit(remote)
    remote.protect("main")
    head = remote.head()
    executor = RevertExecutor(workspace, pulls)
    params = RevertCommit(repo=REPO, commit=bad)

    result = executor.execute(params, executor.preview(params).snapshot, CONTEXT)

    side = f"revert/{bad[:12]}"
    assert remote.head() == head  # main untouched
    assert remote.file("ssot_plan/a.yaml", side) == "a: 1\n"
    assert remote.message(side).rstrip().endswith(TRAILER)
    (pr,) = github.pulls(REPO)
    assert (pr.head_ref, pr.base_ref, pr.title) == (side, "main", 'Revert "Bump a to 2"')
    assert pr.head_sha == remote.head(side)
    assert "Incident #42" in pr.body or "incident #42" in pr.body
    assert result.data["pushed_to"] == side
    assert result.data["pr_url"] == f"{github.url}/acme/ssot/pull/{pr.number}"
    assert result.links == [result.data["pr_url"]]
    assert "pre-receive hook declined" in result.summary
    assert "main is a protected branch" in result.summary


def test_protected_branch_without_github_credentials(
    remote: Remote, workspace: GitWorkspace
) -> None:
    bad = bad_commit(remote)
    remote.protect("main")
    head = remote.head()
    executor = RevertExecutor(workspace, None)
    params = RevertCommit(repo=REPO, commit=bad)
    preview = executor.preview(params)
    assert "nothing happens" in preview.summary

    with pytest.raises(ActionError, match="rejected") as error:
        executor.execute(params, preview.snapshot, CONTEXT)
    assert "GitHub credentials" in str(error.value)
    assert remote.head() == head
    assert remote.branches() == ["main"]


def test_mode_pull_request_opens_one_even_when_push_would_work(
    remote: Remote, workspace: GitWorkspace, github: FakeGitHub, pulls: PullRequests
) -> None:
    bad = bad_commit(remote)
    head = remote.head()
    executor = RevertExecutor(workspace, pulls)
    params = RevertCommit(repo=REPO, commit=bad, mode="pull_request")

    preview = executor.preview(params)
    assert "open a pull request" in preview.summary
    result = executor.execute(params, preview.snapshot, CONTEXT)

    assert remote.head() == head
    (pr,) = github.pulls(REPO)
    assert pr.head_ref == f"revert/{bad[:12]}"
    assert result.data["pr_url"].endswith(f"/pull/{pr.number}")
    assert "rejected" not in result.summary

    with pytest.raises(ActionUnavailable):
        RevertExecutor(workspace, None).preview(params)


def test_commit_not_on_the_branch_is_refused_at_preview(
    remote: Remote, workspace: GitWorkspace
) -> None:
    side = remote.commit({"x.txt": "x\n"}, "Only on a branch", branch="experiment")
    executor = RevertExecutor(workspace)
    with pytest.raises(ActionError, match=f"{side[:12]} is not on main"):
        executor.preview(RevertCommit(repo=REPO, commit=side))
    with pytest.raises(ActionError, match="not found"):
        executor.preview(RevertCommit(repo=REPO, commit="deadbeef" * 5))
    with pytest.raises(ActionError, match="branch nope not found"):
        executor.preview(RevertCommit(repo=REPO, branch="nope", commit=side))


def test_changes_already_undone_by_hand_is_an_error_not_an_empty_commit(
    remote: Remote, workspace: GitWorkspace
) -> None:
    bad = bad_commit(remote)
    executor = RevertExecutor(workspace)
    params = RevertCommit(repo=REPO, commit=bad)
    preview = executor.preview(params)
    remote.commit({"ssot_plan/a.yaml": "a: 1\n"}, "Put a back by hand")
    head = remote.head()
    with pytest.raises(ActionError, match="nothing to commit") as error:
        executor.execute(params, preview.snapshot, CONTEXT)
    assert "Nothing was pushed" in str(error.value)
    assert remote.head() == head


def test_already_reverted_by_someone_else_is_a_target_change(
    remote: Remote, workspace: GitWorkspace
) -> None:
    bad = bad_commit(remote)
    executor = RevertExecutor(workspace)
    params = RevertCommit(repo=REPO, commit=bad)
    preview = executor.preview(params)

    # Meanwhile a human reverts it by hand.
    git(remote.seed, "revert", "--no-edit", bad)
    remote.push()
    theirs = remote.head()

    with pytest.raises(TargetChanged, match="already reverted"):
        executor.execute(params, preview.snapshot, CONTEXT)
    assert remote.head() == theirs
    # And a new preview says so too.
    with pytest.raises(ActionError, match="already reverted"):
        executor.preview(params)


def test_branch_moved_since_preview_is_fine_while_the_commit_is_on_it(
    remote: Remote, workspace: GitWorkspace
) -> None:
    bad = bad_commit(remote)
    executor = RevertExecutor(workspace)
    params = RevertCommit(repo=REPO, commit=bad)
    preview = executor.preview(params)
    remote.commit({"other.txt": "later\n"}, "Someone pushes meanwhile")

    result = executor.execute(params, preview.snapshot, CONTEXT)
    assert remote.head() == result.data["revert_sha"]
    assert remote.file("other.txt") == "later\n"


def test_force_pushed_away_commit_is_a_target_change(
    remote: Remote, workspace: GitWorkspace
) -> None:
    base = remote.head()
    bad = bad_commit(remote)
    executor = RevertExecutor(workspace)
    params = RevertCommit(repo=REPO, commit=bad)
    preview = executor.preview(params)
    git(remote.seed, "reset", "--quiet", "--hard", base)
    remote.push()
    with pytest.raises(TargetChanged, match="no longer on main"):
        executor.execute(params, preview.snapshot, CONTEXT)
    assert remote.head() == base


def test_snapshot_of_another_commit_is_refused(remote: Remote, workspace: GitWorkspace) -> None:
    bad = bad_commit(remote)
    executor = RevertExecutor(workspace)
    preview = executor.preview(RevertCommit(repo=REPO, commit=bad))
    with pytest.raises(ActionError, match="another commit"):
        executor.execute(RevertCommit(repo=REPO, commit="abcdef1"), preview.snapshot, CONTEXT)
    with pytest.raises(ActionError, match="preview again"):
        executor.execute(RevertCommit(repo=REPO, commit=bad), {}, CONTEXT)


@pytest.mark.parametrize(
    "changes",
    [
        {"branch": "main;rm -rf /"},
        {"branch": "--force"},
        {"branch": "-main"},
        {"branch": "main..other"},
        {"commit": "--upload-pack=touch /tmp/pwned"},
        {"commit": "-n"},
        {"commit": "HEAD@{1}"},
        {"commit": "abc1234 --all"},
        {"repo": "../../etc/passwd"},
        {"repo": "acme/ssot;id"},
        {"mode": "shell"},
    ],
)
def test_hostile_params_never_reach_git(changes: dict[str, str]) -> None:
    params = {"repo": REPO, "branch": "main", "commit": "abc1234", **changes}
    with pytest.raises(ValidationError):
        RevertCommit.model_validate(params)
