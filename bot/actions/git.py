"""Git remediations: revert a commit, restore a path from history, then push.

GitHub has no REST endpoint for a revert, so the bot runs git itself:

* one bare mirror per repository under ``workdir/mirrors`` is cloned once and
  fetched (``--prune``) on later runs, so a big SSOT repository is not cloned
  at 3 a.m.;
* every execution works in its own throw-away clone (``--shared`` from the
  mirror, so it is cheap), hence two executions never share a working tree;
* git always runs with an argument list (never a shell), with ``--`` or
  ``--end-of-options`` before revisions and paths, a timeout, no user or system
  config, no terminal prompt, and the bot's identity;
* the token travels only as an ``http.extraHeader`` passed through the
  environment (``GIT_CONFIG_*``), never in a URL, in argv (world-readable in
  /proc), in the mirror's config, a log line or an error message.

A push the server refuses (protected branch, non-fast-forward) falls back to a
side branch and a pull request when GitHub credentials are configured.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from bot.actions.base import (
    ActionError,
    ActionUnavailable,
    ExecutionContext,
    ExecutionResult,
    Preview,
    TargetChanged,
)
from bot.actions.catalog import RestorePath, RevertCommit
from bot.actions.registry import ActionParams

if TYPE_CHECKING:
    from bot.actions.github import PullRequests

# A token, or a function giving the token for an "owner/name" (GitHub App
# installation tokens are per repository and expire after an hour).
TokenSource = str | Callable[[str], str | None] | None

_REPO = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*/[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# Proxies, CAs and ssh agents are machine settings, not user config: keep them.
_PASSTHROUGH_ENV = {"PATH", "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", "SSH_AUTH_SOCK"}
_MAX_ERROR_CHARS = 600
_MAX_STAT_LINES = 25

P = TypeVar("P", bound=ActionParams)


def auth_header(token: str) -> str:
    """The header GitHub accepts for git over https with an app or personal token."""
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return f"Authorization: Basic {basic}"


def redact(text: str, secrets: list[str]) -> str:
    """Trim git's output for humans and remove anything credential-like."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    text = re.sub(r"(?i)(authorization:\s*\w+\s+)\S+", r"\1[redacted]", text)
    text = re.sub(r"(://)[^/@\s]+@", r"\1[redacted]@", text)  # user:password@ in URLs
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    trimmed = "\n".join(lines)
    if len(trimmed) > _MAX_ERROR_CHARS:
        trimmed = trimmed[:_MAX_ERROR_CHARS] + " …"
    return trimmed


def trailer(context: ExecutionContext) -> str:
    """A git trailer tying the commit to the incident and both people (audit)."""
    return (
        f"Incident: #{context.incident_number}, requested by <@{context.requested_by}>, "
        f"approved by <@{context.approved_by}>"
    )


class GitCommandError(ActionError):
    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode


@dataclass
class Checkout:
    """A throw-away clone of one branch for one execution."""

    workspace: GitWorkspace
    repo: str
    branch: str
    path: Path
    head: str  # the branch head the clone started from

    def git(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.workspace.run(self.path, *args, check=check, stdin=stdin)


class GitWorkspace:
    """Mirrors and per-execution clones of repositories at ``git_base_url``."""

    def __init__(
        self,
        git_base_url: str,
        workdir: Path,
        token: TokenSource = None,
        author_name: str = "NEXUS incident bot",
        author_email: str = "nexus-bot@localhost",
        timeout: float = 120.0,
    ) -> None:
        git = shutil.which("git")
        if git is None:
            raise ActionUnavailable("git is not installed on the bot's host")
        self._git = git
        self.base_url = git_base_url.rstrip("/")
        self.workdir = Path(workdir)
        self._token = token
        self._identity = ("-c", f"user.name={author_name}", "-c", f"user.email={author_email}")
        self.timeout = timeout
        self._secrets: set[str] = set()

    # -- URLs ------------------------------------------------------------------

    def remote_url(self, repo: str) -> str:
        return f"{self.base_url}/{_checked_repo(repo)}.git"

    def web_url(self, repo: str) -> str | None:
        """``https://host/owner/name`` when the git host is GitHub-like (https), else None."""
        return f"{self.base_url}/{repo}" if urlsplit(self.base_url).scheme == "https" else None

    # -- running git -------------------------------------------------------------

    def _env(self, repo: str | None) -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            if name in _PASSTHROUGH_ENV or name.lower().endswith("_proxy")
        }
        env.update(
            HOME=str(self.workdir),  # no ~/.gitconfig, no credential helpers
            GIT_CONFIG_GLOBAL=os.devnull,
            GIT_CONFIG_NOSYSTEM="1",
            GIT_TERMINAL_PROMPT="0",
            LC_ALL="C",  # stable messages to parse (push rejections, conflicts)
        )
        token = self._token_for(repo) if repo else None
        if token:
            header = auth_header(token)
            self._secrets |= {token, header, header.split()[-1]}
            env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0="http.extraHeader",
                GIT_CONFIG_VALUE_0=header,
            )
        return env

    def _token_for(self, repo: str) -> str | None:
        if self._token is None or isinstance(self._token, str):
            return self._token
        return self._token(repo)

    def redact(self, text: str) -> str:
        return redact(text, list(self._secrets))

    def run(
        self,
        cwd: Path,
        *args: str,
        check: bool = True,
        stdin: str | None = None,
        remote_repo: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run git; ``remote_repo`` (for fetch/push) adds the credentials of that repository."""
        command = [self._git, *self._identity, *args]
        # Own session: on timeout the whole group goes (git-remote-https, ssh, hooks),
        # not only the git process subprocess.run would kill.
        with subprocess.Popen(
            command,
            cwd=cwd,
            env=self._env(remote_repo),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as child:
            try:
                stdout, stderr = child.communicate(stdin, timeout=self.timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.communicate()
                raise ActionError(f"git {args[0]} timed out after {self.timeout:g}s") from None
        proc = subprocess.CompletedProcess(command, child.returncode, stdout, stderr)
        if check and proc.returncode != 0:
            output = self.redact(proc.stderr or proc.stdout) or f"exit status {proc.returncode}"
            raise GitCommandError(f"git {args[0]} failed: {output}", proc.returncode)
        return proc

    def rev(self, cwd: Path, revision: str) -> str | None:
        """The object id ``revision`` names, or None."""
        args = ("rev-parse", "--verify", "--quiet", "--end-of-options", revision)
        proc = self.run(cwd, *args, check=False)
        return (proc.stdout.strip() or None) if proc.returncode == 0 else None

    def is_ancestor(self, cwd: Path, sha: str, of: str) -> bool:
        args = ("merge-base", "--is-ancestor", "--end-of-options", sha, of)
        return self.run(cwd, *args, check=False).returncode == 0

    # -- mirrors and clones ----------------------------------------------------

    def mirror_path(self, repo: str) -> Path:
        return self.workdir / "mirrors" / f"{_checked_repo(repo)}.git"

    def sync(self, repo: str) -> Path:
        """The up-to-date bare mirror of ``repo`` (cloned once, then fetched)."""
        mirror = self.mirror_path(repo)
        with self._locked(mirror):
            if not (mirror / "HEAD").exists():
                self._create_mirror(repo, mirror)
            # The URL may have changed in the settings since the mirror was made.
            self.run(mirror, "config", "remote.origin.url", self.remote_url(repo))
            self.run(mirror, "fetch", "--prune", "--no-tags", "--quiet", "origin", remote_repo=repo)
        return mirror

    def _create_mirror(self, repo: str, mirror: Path) -> None:
        # Built beside and renamed into place, so a crash never leaves half a mirror.
        mirror.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=".new-", dir=mirror.parent))
        try:
            self.run(building, "init", "--quiet", "--bare", ".")
            # Branches only: GitHub's refs/pull/* would make the mirror huge.
            self.run(building, "config", "remote.origin.url", self.remote_url(repo))
            self.run(building, "config", "remote.origin.fetch", "+refs/heads/*:refs/heads/*")
            self.run(building, "config", "gc.auto", "0")  # clones borrow its objects
            if mirror.exists():
                shutil.rmtree(mirror)
            building.rename(mirror)
        finally:
            shutil.rmtree(building, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self, mirror: Path) -> Iterator[None]:
        """One fetch per mirror at a time, across threads and processes."""
        mirror.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.timeout
        with open(mirror.with_suffix(".lock"), "w") as lock:
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ActionError(f"{mirror.name} is busy (another git run)") from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def branch_head(self, repo: str, mirror: Path, branch: str) -> str:
        head = self.rev(mirror, f"refs/heads/{branch}")
        if head is None:
            raise ActionError(f"branch {branch} not found in {repo}")
        return head

    @contextlib.contextmanager
    def checkout(self, repo: str, branch: str) -> Iterator[Checkout]:
        """A fresh clone of ``branch`` at its current head, deleted afterwards."""
        mirror = self.sync(repo)
        head = self.branch_head(repo, mirror, branch)
        runs = self.workdir / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix="run-", dir=runs))
        try:
            self.run(path, "clone", "--quiet", "--shared", "--no-checkout", "--", str(mirror), ".")
            self.run(path, "checkout", "--quiet", "--detach", head)
            yield Checkout(self, repo, branch, path, head)
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def push(self, checkout: Checkout, ref: str) -> str | None:
        """Push HEAD to ``ref``; None when done, else why the server refused it."""
        proc = self.run(
            checkout.path,
            "push",
            "--porcelain",
            "--",
            self.remote_url(checkout.repo),
            f"HEAD:{ref}",
            check=False,
            remote_repo=checkout.repo,
        )
        if proc.returncode == 0:
            return None
        refused = [line.split("\t") for line in proc.stdout.splitlines() if line.startswith("!")]
        if not refused:  # auth, network, missing repository: not a refusal to fall back from
            raise GitCommandError(
                f"git push failed: {self.redact(proc.stderr) or proc.returncode}", proc.returncode
            )
        reason = refused[0][-1].strip()
        remote = [
            line.removeprefix("remote:").strip()
            for line in proc.stderr.splitlines()
            if line.startswith("remote:") and line.removeprefix("remote:").strip()
        ]
        return self.redact(" ".join([reason, *remote[:3]]))


# -- shared helpers ----------------------------------------------------------------


def _checked_repo(repo: str) -> str:
    # Also a path under workdir: no "..", no absolute paths.
    if not _REPO.fullmatch(repo):
        raise ActionError(f"expected a repository owner/name, got {repo[:80]!r}")
    return repo


def _params(params: ActionParams, kind: type[P]) -> P:
    if not isinstance(params, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(params).__name__}")
    return params


def _snapshot_value(snapshot: dict[str, Any], key: str) -> str:
    value = snapshot.get(key)
    if not isinstance(value, str):
        raise ActionError(f"the approval's preview lacks {key!r}; preview again")
    return value


def _snapshot_sha(snapshot: dict[str, Any], requested: str) -> str:
    sha = _snapshot_value(snapshot, "sha")
    # The snapshot must be of the very commit the params name (hex form only; HEAD~N moves).
    if not _SHA.fullmatch(sha) or (
        re.fullmatch(r"[0-9a-fA-F]+", requested) and not sha.startswith(requested.lower())
    ):
        raise ActionError(f"the preview was of another commit ({sha[:12]}); preview again")
    return sha


def _resolve(workspace: GitWorkspace, mirror: Path, repo: str, branch: str, revision: str) -> str:
    """A full SHA for ``revision``; ``HEAD`` means the head of ``branch`` now."""
    requested = revision
    if revision.startswith("HEAD"):
        revision = f"refs/heads/{branch}{revision[4:]}"
    sha = workspace.rev(mirror, f"{revision}^{{commit}}")
    if sha is None:
        raise ActionError(f"commit {requested} not found in {repo} (branch {branch})")
    return sha


@dataclass(frozen=True)
class _Commit:
    sha: str
    parents: list[str]
    author: str
    date: str
    title: str


def _commit_info(workspace: GitWorkspace, cwd: Path, sha: str) -> _Commit:
    out = workspace.run(
        cwd, "show", "-s", "--format=%H%x00%P%x00%an <%ae>%x00%aI%x00%s", "--end-of-options", sha
    ).stdout.rstrip("\n")
    full, parents, author, date, title = out.split("\x00", 4)
    return _Commit(full, parents.split(), author, date, title)


def _stat_lines(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > _MAX_STAT_LINES:
        lines = [*lines[: _MAX_STAT_LINES - 1], f"… {len(lines) - _MAX_STAT_LINES} more", lines[-1]]
    return lines


@dataclass(frozen=True)
class _Published:
    pushed_to: str
    pr_url: str | None
    refused: str | None  # why the push to the branch itself was refused, if it was


def _publish(
    workspace: GitWorkspace,
    checkout: Checkout,
    pulls: PullRequests | None,
    *,
    want_pr: bool,
    side_branch: str,
    title: str,
    body: str,
) -> _Published:
    """Push to the branch, or (asked for, or refused) to a side branch with a pull request."""
    branch = checkout.branch
    refused = None
    if not want_pr:
        refused = workspace.push(checkout, f"refs/heads/{branch}")
        if refused is None:
            return _Published(branch, None, None)
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
    return _Published(side_branch, url, refused)


def _links(workspace: GitWorkspace, repo: str, sha: str, published: _Published) -> list[str]:
    if published.pr_url:
        return [published.pr_url]
    web = workspace.web_url(repo)
    return [f"{web}/commit/{sha}"] if web else []


def _where(published: _Published, branch: str) -> str:
    if published.pr_url is None:
        return f"pushed to {branch}"
    why = f" (the push to {branch} was rejected: {published.refused})" if published.refused else ""
    return f"pushed to {published.pushed_to}, pull request {published.pr_url}{why}"


# -- git.revert ------------------------------------------------------------------


class RevertExecutor:
    action = "git.revert"

    def __init__(self, workspace: GitWorkspace, pulls: PullRequests | None = None) -> None:
        self.workspace = workspace
        self.pulls = pulls

    def preview(self, params: ActionParams) -> Preview:
        p = _params(params, RevertCommit)
        if p.mode == "pull_request" and self.pulls is None:
            raise ActionUnavailable("mode pull_request needs GitHub credentials (GITHUB_TOKEN)")
        ws = self.workspace
        mirror = ws.sync(p.repo)
        head = ws.branch_head(p.repo, mirror, p.branch)
        sha = _resolve(ws, mirror, p.repo, p.branch, p.commit)
        if not ws.is_ancestor(mirror, sha, head):
            raise ActionError(f"commit {sha[:12]} is not on {p.branch} of {p.repo}")
        reverted_by = _reverted_by(ws, mirror, sha, head)
        if reverted_by:
            raise ActionError(f"{sha[:12]} was already reverted by {reverted_by[:12]}")
        info = _commit_info(ws, mirror, sha)
        details = [f'Commit {sha[:12]} "{info.title}"', f"Author: {info.author}, {info.date}"]
        if len(info.parents) > 1:
            stat = ws.run(mirror, "diff", "--stat", "--end-of-options", info.parents[0], sha).stdout
            details.append(
                f"Merge commit (parents {', '.join(s[:12] for s in info.parents)}): "
                "reverted against its first parent (-m 1), undoing what the merge brought in"
            )
        else:
            stat = ws.run(mirror, "show", "--stat", "--format=", "--end-of-options", sha).stdout
        details += ["Changes undone:", *_stat_lines(stat)]
        details.append(f"{p.branch} is at {head[:12]}")
        if p.mode == "pull_request":
            then = f"push to revert/{sha[:12]} and open a pull request against {p.branch}"
        elif self.pulls is None:
            then = f"push to {p.branch} (if the push is refused, nothing happens)"
        else:
            then = f"push to {p.branch} (if refused: a pull request instead)"
        details.append(f"Then: {then}")
        return Preview(
            summary=f'Revert {sha[:12]} "{info.title}" on {p.repo}@{p.branch}, then {then}',
            details=details,
            snapshot={"sha": sha, "branch_head": head, "parents": info.parents},
        )

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        p = _params(params, RevertCommit)
        sha = _snapshot_sha(snapshot, p.commit)
        short = sha[:12]
        if p.mode == "pull_request" and self.pulls is None:
            raise ActionUnavailable("mode pull_request needs GitHub credentials (GITHUB_TOKEN)")
        ws = self.workspace
        with ws.checkout(p.repo, p.branch) as co:
            # The branch may have moved since the preview; that is fine as long as
            # the commit is still on it and nobody reverted it meanwhile.
            if not ws.is_ancestor(co.path, sha, co.head):
                raise TargetChanged(
                    f"{short} is no longer on {p.branch} (force-pushed?); nothing was done"
                )
            reverted_by = _reverted_by(ws, co.path, sha, co.head)
            if reverted_by:
                raise TargetChanged(
                    f"{short} was already reverted by {reverted_by[:12]} on {p.branch}; "
                    "nothing was done"
                )
            info = _commit_info(ws, co.path, sha)
            mainline = ["-m", "1"] if len(info.parents) > 1 else []
            proc = co.git("revert", "--no-edit", *mainline, "--end-of-options", sha, check=False)
            if proc.returncode != 0:
                conflicts = co.git("diff", "--name-only", "--diff-filter=U").stdout.split()
                co.git("revert", "--abort", check=False)
                if conflicts:
                    raise ActionError(
                        f"Reverting {short} conflicts with later changes on {p.branch} in: "
                        f"{', '.join(conflicts)}. Nothing was pushed; revert it by hand."
                    )
                raise ActionError(
                    f"git revert {short} failed: {ws.redact(proc.stdout + proc.stderr)}. "
                    "Nothing was pushed."
                )
            message = co.git("log", "-1", "--format=%B").stdout.rstrip()
            message += f"\n\n{trailer(context)}\n"
            co.git("commit", "--amend", "--quiet", "--file=-", stdin=message)
            new_sha = co.git("rev-parse", "HEAD").stdout.strip()
            published = _publish(
                ws,
                co,
                self.pulls,
                want_pr=p.mode == "pull_request",
                side_branch=f"revert/{short}",
                title=f'Revert "{info.title}"',
                body=f"{message}\nOpened by the NEXUS incident bot for incident "
                f"#{context.incident_number}: {context.incident_title}",
            )
        where = _where(published, p.branch)
        return ExecutionResult(
            summary=f"Reverted {short} on {p.repo}@{p.branch}: {where}",
            details=[f"Revert commit {new_sha[:12]}", f'Reverted "{info.title}"', where],
            links=_links(ws, p.repo, new_sha, published),
            data={
                "revert_sha": new_sha,
                "reverted_sha": sha,
                "pushed_to": published.pushed_to,
                "pr_url": published.pr_url,
            },
        )


def _reverted_by(
    workspace: GitWorkspace, cwd: Path, sha: str, head: str, depth: int = 0
) -> str | None:
    """The commit after ``sha`` on ``head`` that reverts it, unless that was reverted too."""
    found = workspace.run(
        cwd,
        "log",
        "--format=%H",
        "--fixed-strings",
        f"--grep=This reverts commit {sha}",
        f"{sha}..{head}",
    ).stdout.split()
    for revert in found:  # newest first
        if depth < 4 and _reverted_by(workspace, cwd, revert, head, depth + 1):
            continue  # "Reapply": the revert was itself reverted
        return revert
    return None


# -- git.restore_path ------------------------------------------------------------


class RestorePathExecutor:
    action = "git.restore_path"

    def __init__(self, workspace: GitWorkspace, pulls: PullRequests | None = None) -> None:
        self.workspace = workspace
        self.pulls = pulls

    def preview(self, params: ActionParams) -> Preview:
        p = _params(params, RestorePath)
        ws = self.workspace
        mirror = ws.sync(p.repo)
        head = ws.branch_head(p.repo, mirror, p.branch)
        # HEAD~N is resolved now; the snapshot pins the SHA, so execution restores
        # exactly what the approver saw even if the branch moves meanwhile.
        sha = _resolve(ws, mirror, p.repo, p.branch, p.commit)
        if _path_object(ws, mirror, sha, p.path) is None:
            raise ActionError(f"{p.path} does not exist at {sha[:12]} in {p.repo}")
        info = _commit_info(ws, mirror, sha)
        diff = ["--end-of-options", head, sha, "--", p.path]
        stat = ws.run(mirror, "diff", "--stat", *diff).stdout
        changed = ws.run(mirror, "diff", "--name-only", *diff).stdout.split()
        if not changed:
            raise ActionError(f"{p.path} at {p.branch} is already identical to {sha[:12]}")
        tracked = ws.run(mirror, "ls-tree", "-r", "--name-only", sha, "--", p.path).stdout.split()
        details = [
            f'Source commit {sha[:12]} "{info.title}" ({info.author}, {info.date})',
            f"{p.path} has {len(tracked)} file(s) at {sha[:12]}; "
            f"restoring changes {len(changed)} file(s) on {p.branch} (at {head[:12]}):",
            *_stat_lines(stat),
            f'Then: commit "{p.message}" and push to {p.branch}',
        ]
        return Preview(
            summary=f"Restore {p.path} on {p.repo}@{p.branch} to {sha[:12]} "
            f"({len(changed)} file(s)), commit and push",
            details=details,
            snapshot={
                "sha": sha,
                "branch_head": head,
                "path_tree": _path_object(ws, mirror, head, p.path),
                "files_changed": len(changed),
            },
        )

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        p = _params(params, RestorePath)
        sha = _snapshot_sha(snapshot, p.commit)
        ws = self.workspace
        with ws.checkout(p.repo, p.branch) as co:
            seen_head = _snapshot_value(snapshot, "branch_head")
            if co.head != seen_head:
                # Other commits are fine; a changed path means the approved diff is stale.
                now = _path_object(ws, co.path, co.head, p.path)
                if now != snapshot.get("path_tree"):
                    raise TargetChanged(
                        f"{p.branch} moved ({seen_head[:12]} → {co.head[:12]}) and {p.path} "
                        "changed since the preview; nothing was done. Preview again."
                    )
            if ws.rev(co.path, f"{sha}^{{commit}}") is None:
                raise TargetChanged(f"{sha[:12]} is gone from {p.repo}; nothing was done")
            # --no-overlay also deletes files added since, so the result is the
            # path exactly as it was (what the preview's diff showed).
            co.git("checkout", "--no-overlay", sha, "--", p.path)
            changed = co.git("diff", "--cached", "--name-only").stdout.split()
            if not changed:
                raise ActionError(f"{p.path} is already identical to {sha[:12]}; nothing to do")
            info = _commit_info(ws, co.path, sha)
            message = (
                f"{p.message}\n\nRestores {p.path} as of {sha} "
                f'("{info.title}").\n\n{trailer(context)}\n'
            )
            co.git("commit", "--quiet", "--file=-", stdin=message)
            new_sha = co.git("rev-parse", "HEAD").stdout.strip()
            published = _publish(
                ws,
                co,
                self.pulls,
                want_pr=False,
                side_branch=f"restore/{sha[:12]}",
                title=p.message,
                body=f"{message}\nOpened by the NEXUS incident bot for incident "
                f"#{context.incident_number}: {context.incident_title}",
            )
        where = _where(published, p.branch)
        return ExecutionResult(
            summary=f"Restored {p.path} on {p.repo}@{p.branch} to {sha[:12]}: {where}",
            details=[f"Commit {new_sha[:12]} changes {len(changed)} file(s)", where],
            links=_links(ws, p.repo, new_sha, published),
            data={
                "commit_sha": new_sha,
                "restored_from": sha,
                "files_changed": len(changed),
                "pushed_to": published.pushed_to,
                "pr_url": published.pr_url,
            },
        )


def _path_object(workspace: GitWorkspace, cwd: Path, commit: str, path: str) -> str | None:
    """The blob/tree id of ``path`` at ``commit`` (None if absent): equal ids, equal content."""
    return workspace.rev(cwd, f"{commit}:{path.rstrip('/')}")
