"""Rehearsed git.revert and git.restore_path: real git, real bare repositories, a drill branch.

A post-receive hook on the bare repository records every ref update the server
accepted, so the tests see the drill branch pushed and deleted, and that no
other ref moved.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.actions.base import ActionError, ExecutionResult
from bot.actions.catalog import RestoreArchive, RestorePath, RestoreSnapshot, RevertCommit
from bot.actions.git_archive import RestoreArchiveExecutor
from bot.actions.git_restore import RestorePathExecutor
from bot.actions.git_revert import RevertExecutor
from bot.actions.git_workspace import GitWorkspace
from bot.actions.github import PullRequests
from bot.actions.registry import ActionParams
from bot.actions.rehearsal_base import RehearsalRefused
from bot.actions.rehearsal_git import DrillWorkspace, GitExecutorClass, GitRehearsal
from bot.actions.s3_snapshot import RestoreSnapshotExecutor
from bot.actions.s3_store import s3_client_from_settings
from bot.settings import Settings
from tests.fakes.github import FakeGitHub
from tests.support.s3 import S3Server
from tests.unit.actions.actions_git_support import CONTEXT, REPO, Remote

DRILL = "drill/42-revert-commit"
DRILL_CONTEXT = dataclasses.replace(CONTEXT, drill_branch=DRILL)
ZERO = "0" * 40


class PushLog:
    """Ref updates the bare repository accepted: (old, new, ref), in order."""

    def __init__(self, remote: Remote) -> None:
        self.path = remote.bare / "pushes.log"
        hook = remote.bare / "hooks" / "post-receive"
        hook.write_text(f'#!/bin/sh\ncat >> "{self.path}"\n')
        hook.chmod(0o755)

    def updates(self) -> list[tuple[str, str, str]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text().splitlines()
        return [(old, new, ref) for old, new, ref in (line.split() for line in lines)]


def refuse(remote: Remote, condition: str, why: str) -> None:
    """A pre-receive hook refusing the ref updates matching a shell ``condition``."""
    hook = remote.bare / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        "while read old new ref; do\n"
        f'  if {condition}; then echo "{why}" >&2; exit 1; fi\n'
        "done\n"
    )
    hook.chmod(0o755)


def rehearsal(
    kind: type[RevertExecutor] | type[RestorePathExecutor],
    remote_root: Path,
    tmp_path: Path,
    pulls: PullRequests | None = None,
    *,
    git_url: str | None = None,
    token: str | None = None,
    open_pull_requests: bool = False,
) -> GitRehearsal:
    url = git_url or f"file://{remote_root}"
    work = tmp_path / "work"
    return GitRehearsal(
        kind,
        GitWorkspace(url, work, token=token),
        lambda branch: DrillWorkspace(branch, url, work, token=token),
        pulls,
        open_pull_requests=open_pull_requests,
    )


def bad_commit(remote: Remote) -> str:
    return remote.commit({"ssot_plan/a.yaml": "a: 2  # wrong\n"}, "Bump a to 2")


def test_revert_rehearsal_pushes_only_the_drill_branch_then_deletes_it(
    remote: Remote, remote_root: Path, tmp_path: Path
) -> None:
    bad = bad_commit(remote)
    main = remote.head()
    pushes = PushLog(remote)  # from here on
    executor = rehearsal(RevertExecutor, remote_root, tmp_path)
    assert executor.action == "git.revert"
    params = RevertCommit(repo=REPO, commit=bad)
    preview = executor.preview(params)
    assert preview.summary.startswith(f"Revert {bad[:12]}")  # the real preview

    result = executor.execute(params, preview.snapshot, DRILL_CONTEXT)

    assert remote.head() == main  # the real branch never moved
    assert remote.branches() == ["main"]  # no drill/* left
    revert_sha = result.data["would_have"]["revert_sha"]
    assert pushes.updates() == [
        (ZERO, revert_sha, f"refs/heads/{DRILL}"),  # pushed: the bot may push
        (revert_sha, ZERO, f"refs/heads/{DRILL}"),  # and deleted
    ]
    assert result.data["rehearsal"] is True
    assert result.data["drill_branch"] == DRILL
    assert result.data["drill_branch_deleted"] is True
    assert "drill_branch_left" not in result.data
    assert result.data["checks"] == [
        f"commit {bad[:12]} found on main, not reverted yet",
        f"revert applied cleanly (no conflicts): commit {revert_sha[:12]}",
        f"push permission verified by pushing the drill branch {DRILL}",
        f"drill branch {DRILL} deleted",
    ]
    assert result.summary == (
        f"Would work: revert {bad[:12]} on {REPO}@main applies cleanly, and the bot can push "
        f"(rehearsed on {DRILL}, since deleted)"
    )
    assert result.undo is None


def test_restore_rehearsal_pushes_only_the_drill_branch_then_deletes_it(
    remote: Remote, remote_root: Path, tmp_path: Path
) -> None:
    good = remote.head()
    remote.commit({"ssot_plan/a.yaml": "a: garbage\n", "ssot_plan/b.yaml": None}, "Regenerate")
    main = remote.head()
    pushes = PushLog(remote)  # from here on
    executor = rehearsal(RestorePathExecutor, remote_root, tmp_path)
    params = RestorePath(repo=REPO, commit="HEAD~1")
    context = dataclasses.replace(CONTEXT, drill_branch="drill/42-restore-from-git")

    result = executor.execute(params, executor.preview(params).snapshot, context)

    assert remote.head() == main
    assert remote.branches() == ["main"]
    assert [ref for _, _, ref in pushes.updates()] == ["refs/heads/drill/42-restore-from-git"] * 2
    assert result.data["would_have"]["restored_from"] == good
    assert result.data["checks"][1].startswith(f"ssot_plan/ restored as of {good[:12]}")
    assert "changes 2 file(s)" in result.data["checks"][1]
    assert "push permission verified" in result.data["checks"][2]
    assert result.summary.startswith(f"Would work: restore ssot_plan/ on {REPO}@main")


@pytest.mark.parametrize("branch", [None, "main", "revert/abc", "drill/../main", "drill/"])
def test_refused_without_a_drill_branch(
    branch: str | None, remote: Remote, remote_root: Path, tmp_path: Path
) -> None:
    bad = bad_commit(remote)
    main = remote.head()
    pushes = PushLog(remote)  # from here on
    executor = rehearsal(RevertExecutor, remote_root, tmp_path)
    params = RevertCommit(repo=REPO, commit=bad)
    preview = executor.preview(params)

    with pytest.raises(RehearsalRefused, match=r"drill branch|drill/12-revert-commit"):
        executor.execute(
            params, preview.snapshot, dataclasses.replace(CONTEXT, drill_branch=branch)
        )
    assert remote.head() == main
    assert pushes.updates() == []


def test_conflicting_revert_would_not_have_worked(
    remote: Remote, remote_root: Path, tmp_path: Path
) -> None:
    bad = bad_commit(remote)
    remote.commit({"ssot_plan/a.yaml": "a: 3\n"}, "Bump a to 3")
    pushes = PushLog(remote)  # from here on
    executor = rehearsal(RevertExecutor, remote_root, tmp_path)
    params = RevertCommit(repo=REPO, commit=bad)
    preview = executor.preview(params)

    with pytest.raises(ActionError, match=r"Would not have worked: .*conflicts") as error:
        executor.execute(params, preview.snapshot, DRILL_CONTEXT)
    assert "ssot_plan/a.yaml" in str(error.value)
    assert pushes.updates() == []
    assert remote.branches() == ["main"]


def test_rejected_drill_push_would_not_have_worked(
    remote: Remote, remote_root: Path, tmp_path: Path
) -> None:
    bad = bad_commit(remote)
    refuse(remote, '[ "$ref" != "refs/heads/none" ]', "the bot may not push here")
    pushes = PushLog(remote)  # from here on
    executor = rehearsal(RevertExecutor, remote_root, tmp_path)
    params = RevertCommit(repo=REPO, commit=bad)
    preview = executor.preview(params)

    with pytest.raises(ActionError, match="Would not have worked") as error:
        executor.execute(params, preview.snapshot, DRILL_CONTEXT)
    assert f"the push to the drill branch {DRILL} of {REPO} was rejected" in str(error.value)
    assert "the bot may not push here" in str(error.value)
    assert pushes.updates() == []


def test_a_drill_branch_that_cannot_be_deleted_is_reported(
    remote: Remote, remote_root: Path, tmp_path: Path
) -> None:
    bad = bad_commit(remote)
    refuse(remote, f'[ "$new" = "{ZERO}" ]', "deleting branches is not allowed")
    pushes = PushLog(remote)  # from here on
    executor = rehearsal(RevertExecutor, remote_root, tmp_path)
    params = RevertCommit(repo=REPO, commit=bad)

    result = executor.execute(params, executor.preview(params).snapshot, DRILL_CONTEXT)

    assert result.data["drill_branch_left"] == DRILL
    assert result.data["drill_branch_deleted"] is False
    assert f"drill branch {DRILL} deleted" not in result.data["checks"]
    assert any(
        f"{DRILL} could NOT be deleted" in line and "deleting branches is not allowed" in line
        for line in result.details
    )
    assert "could NOT be deleted" in result.summary
    assert sorted(remote.branches()) == [DRILL, "main"]
    sha = result.data["would_have"]["revert_sha"]
    assert pushes.updates() == [(ZERO, sha, f"refs/heads/{DRILL}")]  # no deletion went through


def test_a_leftover_drill_branch_is_refused_not_overwritten(
    remote: Remote, remote_root: Path, tmp_path: Path
) -> None:
    bad = bad_commit(remote)
    remote.commit({"notes.txt": "old drill\n"}, "Old drill", branch=DRILL)
    leftover = remote.head(DRILL)
    pushes = PushLog(remote)  # from here on
    executor = rehearsal(RevertExecutor, remote_root, tmp_path)
    params = RevertCommit(repo=REPO, commit=bad)
    preview = executor.preview(params)
    before = pushes.updates()

    with pytest.raises(RehearsalRefused, match="already exists"):
        executor.execute(params, preview.snapshot, DRILL_CONTEXT)
    assert remote.head(DRILL) == leftover
    assert pushes.updates() == before


def test_the_drill_workspace_never_pushes_another_ref(
    remote: Remote, remote_root: Path, tmp_path: Path
) -> None:
    main = remote.head()
    pushes = PushLog(remote)
    ws = DrillWorkspace(DRILL, f"file://{remote_root}", tmp_path / "work")
    with ws.checkout(REPO, "main") as co:
        assert co.branch == DRILL  # what the executor's publish step pushes to
        co.git("commit", "--quiet", "--allow-empty", "-m", "Would move main")
        for ref in ("refs/heads/main", "refs/heads/drill/other", "refs/tags/v1", DRILL):
            with pytest.raises(RehearsalRefused, match="a rehearsal pushes only to"):
                ws.push(co, ref)
    assert remote.head() == main
    assert pushes.updates() == []
    with pytest.raises(RehearsalRefused):
        DrillWorkspace("main", f"file://{remote_root}", tmp_path / "work")


def test_revert_pull_request_mode_rehearses_on_the_drill_branch_without_a_pull_request(
    remote: Remote,
    remote_root: Path,
    tmp_path: Path,
    github: FakeGitHub,
    pulls: PullRequests,
) -> None:
    bad = bad_commit(remote)
    pushes = PushLog(remote)  # from here on
    executor = rehearsal(RevertExecutor, remote_root, tmp_path, pulls)
    params = RevertCommit(repo=REPO, commit=bad, mode="pull_request")

    result = executor.execute(params, executor.preview(params).snapshot, DRILL_CONTEXT)

    assert [ref for _, _, ref in pushes.updates()] == [f"refs/heads/{DRILL}"] * 2
    assert github.pulls(REPO) == []
    assert [c.route for c in github.api_calls() if c.method != "GET"] == []
    assert result.data["drill_branch_deleted"] is True


def test_open_pull_requests_opens_and_closes_one_from_the_drill_branch(
    remote: Remote,
    remote_root: Path,
    tmp_path: Path,
    github: FakeGitHub,
    pulls: PullRequests,
) -> None:
    bad = bad_commit(remote)
    main = remote.head()
    pushes = PushLog(remote)  # from here on
    executor = rehearsal(
        RevertExecutor,
        remote_root,
        tmp_path,
        pulls,
        git_url=github.git_url,  # git over HTTP, with the token, through the fake GitHub
        token=github.token,
        open_pull_requests=True,
    )
    params = RevertCommit(repo=REPO, commit=bad)

    result = executor.execute(params, executor.preview(params).snapshot, DRILL_CONTEXT)

    (pr,) = github.pulls(REPO)
    assert (pr.head_ref, pr.base_ref, pr.state) == (DRILL, "main", "closed")
    assert pr.title == "[DRILL] git.revert rehearsal for incident #42"
    assert pr.comments == []
    assert result.data["drill_pr_url"] == f"{github.url}/{REPO}/pull/{pr.number}"
    assert "drill pull request closed" in result.data["checks"]
    assert remote.head() == main
    assert remote.branches() == ["main"]
    assert [ref for _, _, ref in pushes.updates()] == [f"refs/heads/{DRILL}"] * 2
    pushed = [c for c in github.git_calls() if c.path.endswith("/git-receive-pack")]
    assert len(pushed) == 2  # the drill branch, then its deletion


# -- git.restore_archive and s3.restore_snapshot ------------------------------------
#
# GitRehearsal runs ``executor(DrillWorkspace, None).execute(...)`` then deletes the
# drill branch. These executors publish through the workspace like RestorePathExecutor,
# so that wrapping works; the first tests run exactly those steps, the last ones
# through GitRehearsal itself.

BUCKET = "nexus-ssot-snapshots"
SNAPSHOT = {"ssot_plan/a.yaml": "a: 1\n", "ssot_plan/b.yaml": "b: 1\n"}


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    s3_server.use(monkeypatch)
    return s3_server


def archive_and_wipe(remote: Remote) -> None:
    remote.commit({"archive/ssot_backup/a.yaml": "a: 1\n"}, "Back up the plan")
    remote.commit({"ssot_plan/a.yaml": "a: garbage\n", "ssot_plan/z.yaml": "z\n"}, "Regenerate")


def snapshot_executor(settings: Settings) -> GitExecutorClass:
    return lambda ws, pulls: RestoreSnapshotExecutor(
        ws, pulls, lambda: s3_client_from_settings(settings)
    )


def rehearse_by_hand(
    executor: GitExecutorClass,
    params: ActionParams,
    remote_root: Path,
    tmp_path: Path,
) -> ExecutionResult:
    """What GitRehearsal.execute does: preview for real, execute in a DrillWorkspace,
    delete the drill branch."""
    url, work = f"file://{remote_root}", tmp_path / "work"
    snapshot = executor(GitWorkspace(url, work), None).preview(params).snapshot
    drill = DrillWorkspace(DRILL, url, work)
    done = executor(drill, None).execute(params, snapshot, DRILL_CONTEXT)
    assert drill.pushed
    assert drill.delete_drill_branch(REPO) is None
    return done


def test_archive_restore_in_a_drill_workspace_lands_on_the_drill_branch_only(
    remote: Remote, remote_root: Path, tmp_path: Path
) -> None:
    archive_and_wipe(remote)
    main = remote.head()
    pushes = PushLog(remote)  # from here on

    done = rehearse_by_hand(
        RestoreArchiveExecutor, RestoreArchive(repo=REPO), remote_root, tmp_path
    )

    sha = done.data["commit_sha"]
    assert pushes.updates() == [
        (ZERO, sha, f"refs/heads/{DRILL}"),
        (sha, ZERO, f"refs/heads/{DRILL}"),
    ]
    assert done.data["pushed_to"] == DRILL
    assert remote.head() == main
    assert remote.branches() == ["main"]
    assert remote.file("ssot_plan/a.yaml") == "a: garbage\n"


def test_snapshot_restore_in_a_drill_workspace_lands_on_the_drill_branch_only(
    s3: S3Server, remote: Remote, remote_root: Path, tmp_path: Path
) -> None:
    remote.commit({"ssot_plan/a.yaml": "a: garbage\n"}, "Regenerate")
    main = remote.head()
    s3.upload_snapshot(BUCKET, "latest/", SNAPSHOT)
    pushes = PushLog(remote)  # from here on

    done = rehearse_by_hand(
        snapshot_executor(s3.settings()),
        RestoreSnapshot(repo=REPO, bucket=BUCKET),
        remote_root,
        tmp_path,
    )

    sha = done.data["commit_sha"]
    assert [(new, ref) for _, new, ref in pushes.updates()] == [
        (sha, f"refs/heads/{DRILL}"),
        (ZERO, f"refs/heads/{DRILL}"),
    ]
    assert done.data["files_changed"] == 1
    assert remote.head() == main
    assert remote.branches() == ["main"]


def test_archive_restore_rehearsal(remote: Remote, remote_root: Path, tmp_path: Path) -> None:
    archive_and_wipe(remote)
    main = remote.head()
    pushes = PushLog(remote)
    url, work = f"file://{remote_root}", tmp_path / "work"
    executor = GitRehearsal(
        RestoreArchiveExecutor, GitWorkspace(url, work), lambda b: DrillWorkspace(b, url, work)
    )
    assert executor.action == "git.restore_archive"
    params = RestoreArchive(repo=REPO)

    result = executor.execute(params, executor.preview(params).snapshot, DRILL_CONTEXT)

    assert result.data["rehearsal"] is True
    assert result.data["drill_branch_deleted"] is True
    assert [ref for _, _, ref in pushes.updates()] == [f"refs/heads/{DRILL}"] * 2
    assert remote.head() == main
    assert remote.branches() == ["main"]


def test_snapshot_restore_rehearsal(
    s3: S3Server, remote: Remote, remote_root: Path, tmp_path: Path
) -> None:
    remote.commit({"ssot_plan/a.yaml": "a: garbage\n"}, "Regenerate")
    main = remote.head()
    s3.upload_snapshot(BUCKET, "latest/", SNAPSHOT)
    pushes = PushLog(remote)
    url, work = f"file://{remote_root}", tmp_path / "work"
    executor = GitRehearsal(
        snapshot_executor(s3.settings()),
        GitWorkspace(url, work),
        lambda b: DrillWorkspace(b, url, work),
    )
    assert executor.action == "s3.restore_snapshot"
    params = RestoreSnapshot(repo=REPO, bucket=BUCKET)

    result = executor.execute(params, executor.preview(params).snapshot, DRILL_CONTEXT)

    assert result.data["rehearsal"] is True
    assert result.data["drill_branch_deleted"] is True
    assert [ref for _, _, ref in pushes.updates()] == [f"refs/heads/{DRILL}"] * 2
    assert remote.head() == main
    assert remote.branches() == ["main"]
