"""git.restore_archive against real bare repositories: cp archive/ssot_backup/* ssot_plan/."""

from __future__ import annotations

import pytest

from bot.actions.base import ActionError, ActionUnavailable, TargetChanged
from bot.actions.catalog import RestoreArchive
from bot.actions.git_archive import RestoreArchiveExecutor
from bot.actions.git_workspace import GitWorkspace
from bot.actions.github import PullRequests
from tests.fakes.github import FakeGitHub
from tests.unit.actions.actions_git_support import CONTEXT, REPO, TRAILER, Remote

PARAMS = RestoreArchive(repo=REPO)


def archive_and_wipe(remote: Remote) -> None:
    """A backup of the plan in archive/ssot_backup/, then the incident damages the plan."""
    remote.commit(
        {
            "archive/ssot_backup/a.yaml": "a: 1\n",
            "archive/ssot_backup/b.yaml": "b: 1\n",
            "archive/ssot_backup/extra/c.yaml": "c: 1\n",
        },
        "Back up the plan",
    )
    remote.commit(
        {"ssot_plan/a.yaml": "a: garbage\nmore: garbage\n", "ssot_plan/z.yaml": "z: 1\n"},
        "Frenly AI: regenerate plan",
    )


def test_preview_lists_what_the_copy_adds_and_changes(
    remote: Remote, workspace: GitWorkspace
) -> None:
    archive_and_wipe(remote)
    head = remote.head()
    preview = RestoreArchiveExecutor(workspace).preview(PARAMS)

    assert preview.summary == (
        f"Restore ssot_plan/ on {REPO}@main from archive/ssot_backup/ "
        "(1 added, 1 changed), commit and push"
    )
    assert preview.details[0].startswith(f"archive/ssot_backup/ on main (at {head[:12]}")
    assert "has 3 file(s)" in preview.details[0]
    assert "nothing is deleted (2 other file(s) in ssot_plan/ stay" in preview.details[0]
    assert preview.details[1:3] == [
        "  ~ ssot_plan/a.yaml (+1 -2)",
        "  + ssot_plan/extra/c.yaml (+1 -0)",
    ]
    assert preview.details[-1] == (
        'Then: commit "Restore SSOT from archive" and push to main '
        "(if the push is refused, nothing happens)"
    )
    assert preview.snapshot["branch_head"] == head
    assert preview.snapshot["archive_tree"] == remote.rev("main:archive/ssot_backup")
    assert preview.snapshot["files"] == ["ssot_plan/a.yaml", "ssot_plan/extra/c.yaml"]


def test_restore_commits_the_copy_on_main(remote: Remote, workspace: GitWorkspace) -> None:
    archive_and_wipe(remote)
    executor = RestoreArchiveExecutor(workspace)
    preview = executor.preview(PARAMS)

    result = executor.execute(PARAMS, preview.snapshot, CONTEXT)

    assert remote.files(path="ssot_plan") == [
        "ssot_plan/a.yaml",
        "ssot_plan/b.yaml",
        "ssot_plan/extra/c.yaml",
        "ssot_plan/z.yaml",  # cp deletes nothing
    ]
    assert remote.file("ssot_plan/a.yaml") == "a: 1\n"
    assert remote.file("ssot_plan/extra/c.yaml") == "c: 1\n"
    assert remote.file("ssot_plan/z.yaml") == "z: 1\n"
    message = remote.message()
    assert message.startswith("Restore SSOT from archive\n")
    assert message.rstrip().endswith(TRAILER)
    assert remote.author() == "NEXUS incident bot <nexus-bot@localhost>"
    assert result.data == {
        "commit_sha": remote.head(),
        "archive_tree": preview.snapshot["archive_tree"],
        "files_restored": ["ssot_plan/a.yaml", "ssot_plan/extra/c.yaml"],
        "files_changed": 2,
        "files_copied": 3,
        "pushed_to": "main",
        "pr_url": None,
    }
    assert result.summary == (
        f"Restored ssot_plan/ on {REPO}@main from archive/ssot_backup/: pushed to main"
    )

    # Done once, the same restore has nothing left to do.
    with pytest.raises(ActionError, match="already matches archive/ssot_backup/: nothing"):
        executor.preview(PARAMS)


def test_identical_is_refused_before_and_at_execution(
    remote: Remote, workspace: GitWorkspace
) -> None:
    remote.commit(
        {"archive/ssot_backup/a.yaml": "a: 1\n", "archive/ssot_backup/b.yaml": "b: 1\n"},
        "Back up the plan",
    )
    executor = RestoreArchiveExecutor(workspace)
    with pytest.raises(ActionError, match="ssot_plan/ on main already matches"):
        executor.preview(PARAMS)

    head = remote.head()
    snapshot = {"branch_head": head, "archive_tree": remote.rev("main:archive/ssot_backup")}
    with pytest.raises(ActionError, match="nothing to restore"):
        executor.execute(PARAMS, snapshot, CONTEXT)
    assert remote.head() == head


def test_missing_archive_is_refused(remote: Remote, workspace: GitWorkspace) -> None:
    with pytest.raises(ActionError, match=f"no archive/ssot_backup/ on main of {REPO}"):
        RestoreArchiveExecutor(workspace).preview(PARAMS)


def test_archive_changed_since_the_preview_is_a_target_change(
    remote: Remote, workspace: GitWorkspace
) -> None:
    archive_and_wipe(remote)
    executor = RestoreArchiveExecutor(workspace)
    preview = executor.preview(PARAMS)
    remote.commit({"archive/ssot_backup/a.yaml": "a: 99\n"}, "Re-archive")
    head = remote.head()

    with pytest.raises(TargetChanged, match="archive/ssot_backup/ on main changed"):
        executor.execute(PARAMS, preview.snapshot, CONTEXT)
    assert remote.head() == head

    remote.commit(
        {
            "archive/ssot_backup/a.yaml": None,
            "archive/ssot_backup/b.yaml": None,
            "archive/ssot_backup/extra/c.yaml": None,
        },
        "Drop the archive",
    )
    with pytest.raises(TargetChanged, match="archive/ssot_backup/ on main is gone"):
        executor.execute(PARAMS, preview.snapshot, CONTEXT)


def test_protected_branch_restore_opens_a_pull_request(
    remote: Remote, workspace: GitWorkspace, github: FakeGitHub, pulls: PullRequests
) -> None:
    archive_and_wipe(remote)
    main = remote.head()
    remote.protect()
    executor = RestoreArchiveExecutor(workspace, pulls)
    preview = executor.preview(PARAMS)
    assert "(if refused: a pull request instead)" in preview.details[-1]

    result = executor.execute(PARAMS, preview.snapshot, CONTEXT)

    (pr,) = github.pulls(REPO)
    tree = preview.snapshot["archive_tree"]
    assert (pr.head_ref, pr.base_ref) == (f"restore/archive-{tree[:12]}", "main")
    assert pr.title == "Restore SSOT from archive"
    assert remote.file("ssot_plan/a.yaml", pr.head_ref) == "a: 1\n"
    assert remote.head() == main
    assert result.data["pr_url"] == f"{github.url}/{REPO}/pull/{pr.number}"
    assert "main is a protected branch" in result.summary


def test_pull_request_mode(
    remote: Remote, workspace: GitWorkspace, github: FakeGitHub, pulls: PullRequests
) -> None:
    archive_and_wipe(remote)
    main = remote.head()
    params = RestoreArchive(repo=REPO, mode="pull_request", message="Bring the archive back")
    with pytest.raises(ActionUnavailable, match="needs GitHub credentials"):
        RestoreArchiveExecutor(workspace).preview(params)
    executor = RestoreArchiveExecutor(workspace, pulls)

    result = executor.execute(params, executor.preview(params).snapshot, CONTEXT)

    (pr,) = github.pulls(REPO)
    assert pr.title == "Bring the archive back"
    assert remote.head() == main  # never pushed to main, not even tried
    assert result.data["pushed_to"] == pr.head_ref
