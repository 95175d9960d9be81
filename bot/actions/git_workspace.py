"""The git side of the git remediations: mirrors, throw-away clones, running git, pushing.

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
from urllib.parse import urlsplit

from bot.actions.base import ActionError, ActionUnavailable

# A token, or a function giving the token for an "owner/name" (GitHub App
# installation tokens are per repository and expire after an hour).
TokenSource = str | Callable[[str], str | None] | None

_REPO = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*/[A-Za-z0-9_][A-Za-z0-9_.-]*")
# Proxies, CAs and ssh agents are machine settings, not user config: keep them.
_PASSTHROUGH_ENV = {"PATH", "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", "SSH_AUTH_SOCK"}
_MAX_ERROR_CHARS = 600


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


def _checked_repo(repo: str) -> str:
    # Also a path under workdir: no "..", no absolute paths.
    if not _REPO.fullmatch(repo):
        raise ActionError(f"expected a repository owner/name, got {repo[:80]!r}")
    return repo
