"""git.restore_path against real bare repositories: the previewed SHA is what gets restored."""

from __future__ import annotations

import pytest

from bot.actions.base import ActionError, TargetChanged
from bot.actions.catalog import RestorePath
from bot.actions.git_restore import RestorePathExecutor
from bot.actions.git_workspace import GitWorkspace
from bot.actions.github import PullRequests
from tests.fakes.github import FakeGitHub
from tests.unit.actions.actions_git_support import CONTEXT, TRAILER, Remote

REPO = "acme/ssot"


def wipe(remote: Remote) -> str:
    """The incident: a commit that damages the SSOT plan (edit, delete, add)."""
    return remote.commit(
        {"ssot_plan/a.yaml": "a: garbage\n", "ssot_plan/b.yaml": None, "ssot_plan/z.yaml": "z\n"},
        "Regenerate plan",
    )


def test_restore_from_head_1(remote: Remote, workspace: GitWorkspace) -> None:
    good = remote.head()
    wipe(remote)
    executor = RestorePathExecutor(workspace)
    params = RestorePath(repo=REPO, commit="HEAD~1")

    preview = executor.preview(params)
    assert preview.snapshot["sha"] == good
    assert preview.snapshot["files_changed"] == 3
    assert any("ssot_plan/ has 2 file(s)" in line for line in preview.details)
    assert any("ssot_plan/b.yaml" in line for line in preview.details)

    result = executor.execute(params, preview.snapshot, CONTEXT)
    assert remote.files(path="ssot_plan") == ["ssot_plan/a.yaml", "ssot_plan/b.yaml"]
    assert remote.file("ssot_plan/a.yaml") == "a: 1\n"
    assert remote.file("ssot_plan/b.yaml") == "b: 1\n"  # the added z.yaml is gone too
    message = remote.message()
    assert message.startswith("Restore SSOT from git history\n")
    assert f"as of {good}" in message
    assert message.rstrip().endswith(TRAILER)
    assert result.data == {
        "commit_sha": remote.head(),
        "restored_from": good,
        "files_changed": 3,
        "pushed_to": "main",
        "pr_url": None,
    }


def test_restore_from_a_sha_with_a_custom_message(remote: Remote, workspace: GitWorkspace) -> None:
    good = remote.head()
    wipe(remote)
    remote.commit({"README.md": "more\n"}, "Docs")
    executor = RestorePathExecutor(workspace)
    params = RestorePath(
        repo=REPO, commit=good[:10], path="ssot_plan/b.yaml", message="Bring b back"
    )

    preview = executor.preview(params)
    executor.execute(params, preview.snapshot, CONTEXT)
    assert remote.file("ssot_plan/b.yaml") == "b: 1\n"
    assert remote.file("ssot_plan/a.yaml") == "a: garbage\n"  # only the path asked for
    assert remote.message().startswith("Bring b back\n")


def test_head_relative_commit_is_pinned_by_the_preview(
    remote: Remote, workspace: GitWorkspace
) -> None:
    good = remote.head()
    wiped = wipe(remote)
    executor = RestorePathExecutor(workspace)
    params = RestorePath(repo=REPO, commit="HEAD~1")
    preview = executor.preview(params)
    # The branch moves outside the path: HEAD~1 now means the wipe, but the approval was for `good`.
    remote.commit({"README.md": "moved\n"}, "Unrelated")

    result = executor.execute(params, preview.snapshot, CONTEXT)
    assert result.data["restored_from"] == good != wiped
    assert remote.file("ssot_plan/b.yaml") == "b: 1\n"
    assert remote.file("README.md") == "moved\n"


def test_identical_path_is_refused(remote: Remote, workspace: GitWorkspace) -> None:
    remote.commit({"README.md": "docs only\n"}, "Docs only")
    executor = RestorePathExecutor(workspace)
    with pytest.raises(ActionError, match="already identical"):
        executor.preview(RestorePath(repo=REPO, commit="HEAD~1"))

    # Execution checks again (its snapshot could be stale in other ways).
    head = remote.head()
    snapshot = {"sha": head, "branch_head": head, "path_tree": None}
    with pytest.raises(ActionError, match="already identical"):
        executor.execute(RestorePath(repo=REPO, commit="HEAD"), snapshot, CONTEXT)
    assert remote.head() == head


def test_branch_moved_and_path_changed_is_a_target_change(
    remote: Remote, workspace: GitWorkspace
) -> None:
    wipe(remote)
    executor = RestorePathExecutor(workspace)
    params = RestorePath(repo=REPO, commit="HEAD~1")
    preview = executor.preview(params)
    remote.commit({"ssot_plan/a.yaml": "a: fixed by hand\n"}, "Hotfix a")
    head = remote.head()

    with pytest.raises(TargetChanged, match="ssot_plan/ changed since the preview"):
        executor.execute(params, preview.snapshot, CONTEXT)
    assert remote.head() == head


def test_path_missing_at_the_commit_is_refused(remote: Remote, workspace: GitWorkspace) -> None:
    executor = RestorePathExecutor(workspace)
    with pytest.raises(ActionError, match="does not exist"):
        executor.preview(RestorePath(repo=REPO, commit="HEAD", path="nothing/here"))
    with pytest.raises(ActionError, match="not found"):
        executor.preview(RestorePath(repo=REPO, commit="HEAD~5"))


def test_protected_branch_restore_opens_a_pull_request(
    remote: Remote, workspace: GitWorkspace, github: FakeGitHub, pulls: PullRequests
) -> None:
    good = remote.head()
    wipe(remote)
    remote.protect()
    executor = RestorePathExecutor(workspace, pulls)
    params = RestorePath(repo=REPO, commit="HEAD~1")

    result = executor.execute(params, executor.preview(params).snapshot, CONTEXT)
    (pr,) = github.pulls(REPO)
    assert (pr.head_ref, pr.base_ref) == (f"restore/{good[:12]}", "main")
    assert pr.title == "Restore SSOT from git history"
    assert remote.file("ssot_plan/b.yaml", pr.head_ref) == "b: 1\n"
    assert result.data["pr_url"] == f"{github.url}/acme/ssot/pull/{pr.number}"
