"""GitWorkspace: mirror cache, throw-away clones, a clean git environment, and the token."""

from __future__ import annotations

import base64
import socket
import threading
import time
from pathlib import Path

import pytest

from bot.actions.base import ActionError
from bot.actions.catalog import RevertCommit
from bot.actions.git_revert import RevertExecutor
from bot.actions.git_workspace import GitWorkspace, auth_header, redact
from bot.actions.github import GitHubConnector
from tests.fakes.github import FakeGitHub
from tests.unit.actions.actions_git_support import APP_ID, CONTEXT, Remote, git

REPO = "acme/ssot"
SECRET = "ghp_TOPsecretTOKENvalue1234567890"


def test_mirror_is_cloned_once_then_fetched(remote: Remote, workspace: GitWorkspace) -> None:
    mirror = workspace.sync(REPO)
    assert mirror == workspace.workdir / "mirrors" / "acme" / "ssot.git"
    marker = mirror / "nexus-test-marker"
    marker.write_text("still here")
    objects_inode = (mirror / "objects").stat().st_ino
    new = remote.commit({"new.txt": "new\n"}, "New upstream commit")
    remote.commit({"gone.txt": "x\n"}, "On a branch that will be deleted", branch="tmp")
    assert "tmp" in git(workspace.sync(REPO), "branch").split()
    git(remote.bare, "branch", "-D", "tmp")

    assert workspace.sync(REPO) == mirror
    assert marker.read_text() == "still here"  # the same directory: fetched, not re-cloned
    assert (mirror / "objects").stat().st_ino == objects_inode
    assert git(mirror, "rev-parse", "refs/heads/main").strip() == new
    assert git(mirror, "branch").split() == ["main"]  # --prune


def test_each_execution_gets_its_own_clone_removed_afterwards(
    remote: Remote, workspace: GitWorkspace
) -> None:
    with workspace.checkout(REPO, "main") as one, workspace.checkout(REPO, "main") as two:
        assert one.path != two.path
        (one.path / "README.md").write_text("dirty\n")
        assert (two.path / "README.md").read_text() == "ssot\n"
        assert one.head == two.head == remote.head()
    assert list((workspace.workdir / "runs").iterdir()) == []


def test_concurrent_executions_do_not_collide(remote: Remote, workspace: GitWorkspace) -> None:
    first = remote.commit({"one.txt": "1\n"}, "One")
    second = remote.commit({"two.txt": "2\n"}, "Two")
    executor = RevertExecutor(workspace)
    errors: list[BaseException] = []

    def revert(sha: str) -> None:
        params = RevertCommit(repo=REPO, commit=sha)
        try:
            executor.execute(params, executor.preview(params).snapshot, CONTEXT)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=revert, args=(sha,)) for sha in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # One push may lose the race (non-fast-forward, no PR configured); none may corrupt anything.
    for error in errors:
        assert isinstance(error, ActionError) and "rejected" in str(error), error
    assert len(errors) <= 1
    git(remote.bare, "fsck", "--no-progress")


def test_user_and_system_git_config_are_ignored(
    remote: Remote, workspace: GitWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evil = tmp_path / "evil.gitconfig"
    evil.write_text("[user]\n\tname = Mallory\n\temail = m@evil\n[commit]\n\tgpgSign = true\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(evil))
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".gitconfig").write_text(evil.read_text())
    bad = remote.commit({"README.md": "bad\n"}, "Bad")
    executor = RevertExecutor(workspace)
    params = RevertCommit(repo=REPO, commit=bad)
    executor.execute(params, executor.preview(params).snapshot, CONTEXT)
    assert remote.author() == "NEXUS incident bot <nexus-bot@localhost>"


def test_auth_header_and_redaction() -> None:
    header = auth_header(SECRET)
    encoded = base64.b64encode(f"x-access-token:{SECRET}".encode()).decode()
    assert header == f"Authorization: Basic {encoded}"
    text = (
        f"fatal: unable to access 'https://x-access-token:{SECRET}@github.com/a/b.git/'\n\n"
        f"trace: {header}\nother {SECRET} and {encoded}\n" + "x" * 2000
    )
    cleaned = redact(text, [SECRET, header, encoded])
    assert SECRET not in cleaned
    assert encoded not in cleaned
    assert "[redacted]" in cleaned
    assert "\n\n" not in cleaned
    assert len(cleaned) < 700
    assert redact("Authorization: Bearer abc.def", []) == "Authorization: Bearer [redacted]"


def test_token_is_in_no_config_and_no_error(
    remote: Remote, remote_root: Path, tmp_path: Path
) -> None:
    workspace = GitWorkspace(f"file://{remote_root}", tmp_path / "work", token=SECRET)
    mirror = workspace.sync(REPO)
    encoded = auth_header(SECRET).split()[-1]
    config = git(mirror, "config", "--list") + (mirror / "config").read_text()
    assert SECRET not in config and encoded not in config
    with pytest.raises(ActionError) as error:
        workspace.sync("acme/missing")
    assert "git fetch failed" in str(error.value)
    assert SECRET not in str(error.value) and encoded not in str(error.value)
    with pytest.raises(ActionError, match="owner/name"):
        workspace.sync("../escape")


def test_web_links_only_for_https_hosts(tmp_path: Path) -> None:
    https = GitWorkspace("https://github.com/", tmp_path)
    assert https.remote_url(REPO) == "https://github.com/acme/ssot.git"
    assert https.web_url(REPO) == "https://github.com/acme/ssot"
    assert GitWorkspace("file:///srv/git", tmp_path).web_url(REPO) is None


def test_git_over_http_sends_the_token_as_a_header_only(
    remote: Remote, github: FakeGitHub, tmp_path: Path
) -> None:
    bad = remote.commit({"README.md": "bad\n"}, "Bad")
    workspace = GitWorkspace(github.git_url, tmp_path / "work", token=github.token)
    executor = RevertExecutor(workspace)
    params = RevertCommit(repo=REPO, commit=bad)

    result = executor.execute(params, executor.preview(params).snapshot, CONTEXT)
    assert remote.head() == result.data["revert_sha"]
    calls = github.git_calls()
    assert any("git-receive-pack" in c.path for c in calls)  # the push went over HTTP
    for call in calls:
        assert call.headers["Authorization"] == auth_header(github.token).split(": ", 1)[1]
        assert github.token not in call.path
    mirror_config = (workspace.mirror_path(REPO) / "config").read_text()
    assert github.token not in mirror_config
    assert "http.extraheader" not in mirror_config.lower()


def test_git_over_http_with_a_bad_token_fails_clearly(
    remote: Remote, github: FakeGitHub, tmp_path: Path
) -> None:
    workspace = GitWorkspace(github.git_url, tmp_path / "work", token=SECRET)
    with pytest.raises(ActionError) as error:
        RevertExecutor(workspace).preview(RevertCommit(repo=REPO, commit=remote.head()))
    message = str(error.value)
    assert message.startswith("git fetch failed")
    assert SECRET not in message and auth_header(SECRET).split()[-1] not in message
    assert github.git_calls()[0].status == 401


def test_git_over_http_with_a_github_app_installation_token(
    remote: Remote, github: FakeGitHub, tmp_path: Path, app_key: tuple[str, str]
) -> None:
    bad = remote.commit({"README.md": "bad\n"}, "Bad")
    connector = GitHubConnector(github.url, app_id=APP_ID, private_key=app_key[0])
    workspace = GitWorkspace(github.git_url, tmp_path / "work", token=connector.git_token)
    executor = RevertExecutor(workspace)
    params = RevertCommit(repo=REPO, commit=bad)

    executor.execute(params, executor.preview(params).snapshot, CONTEXT)
    assert remote.file("README.md") == "ssot\n"
    (installation_token,) = github.issued_tokens  # fetched once, reused by every git call
    expected = auth_header(installation_token).split(": ", 1)[1]
    assert {c.headers["Authorization"] for c in github.git_calls()} == {expected}


def test_a_hanging_server_times_out(tmp_path: Path) -> None:
    # Accepts connections (the kernel's backlog) but never answers.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        workspace = GitWorkspace(url, tmp_path / "work", token=SECRET, timeout=1.0)
        started = time.monotonic()
        with pytest.raises(ActionError, match=r"git fetch timed out after 1s"):
            workspace.sync(REPO)
        assert time.monotonic() - started < 10
