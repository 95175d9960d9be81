"""Real bare repositories on disk for the git executor tests, and a seed clone to commit in."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bot.actions.base import ExecutionContext

REPO = "acme/ssot"
APP_ID = 4242
INSTALLATION_ID = 77
CONTEXT = ExecutionContext(
    incident_number=42,
    incident_title="SSOT plan wiped",
    requested_by="U0REQUEST",
    approved_by="U0APPROVE",
    incident_url="https://slack.example/archives/C1/p1",
)
TRAILER = "Incident: #42, requested by <@U0REQUEST>, approved by <@U0APPROVE>"


def git(cwd: Path, *args: str, stdin: str | None = None) -> str:
    """Git as a human on the other side would run it (no user config either)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "Dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
    }
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {proc.stderr}")
    return proc.stdout


class Remote:
    """``root/owner/name.git`` (bare, what the bot pushes to) and a clone a developer uses."""

    def __init__(self, root: Path, repo: str, scratch: Path) -> None:
        self.repo = repo
        self.bare = root / f"{repo}.git"
        self.bare.mkdir(parents=True)
        git(self.bare, "init", "--quiet", "--bare", "--initial-branch=main")
        self.seed = scratch / f"seed-{repo.replace('/', '-')}"
        self.seed.mkdir(parents=True)
        git(self.seed, "init", "--quiet", "--initial-branch=main")
        git(self.seed, "remote", "add", "origin", str(self.bare))

    def commit(
        self, files: dict[str, str | None], message: str, *, branch: str = "main", push: bool = True
    ) -> str:
        """Write (or delete, for None) files, commit them on ``branch`` and push it."""
        self.switch(branch)
        for name, text in files.items():
            path = self.seed / name
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        git(self.seed, "add", "--all")
        git(self.seed, "commit", "--quiet", "-m", message)
        if push:
            self.push(branch)
        return git(self.seed, "rev-parse", "HEAD").strip()

    def switch(self, branch: str) -> None:
        current = git(self.seed, "symbolic-ref", "--short", "HEAD").strip()
        if current == branch:
            return
        known = git(self.seed, "branch", "--list", branch).strip()
        git(self.seed, "checkout", "--quiet", *([] if known else ["-b"]), branch)

    def push(self, branch: str = "main") -> None:
        git(self.seed, "push", "--quiet", "--force", "origin", f"{branch}:refs/heads/{branch}")

    def merge(self, branch: str, message: str) -> str:
        self.switch("main")
        git(self.seed, "merge", "--quiet", "--no-ff", "-m", message, branch)
        self.push("main")
        return git(self.seed, "rev-parse", "HEAD").strip()

    def pull(self) -> None:
        self.switch("main")
        git(self.seed, "fetch", "--quiet", "origin")
        git(self.seed, "reset", "--quiet", "--hard", "origin/main")

    def head(self, branch: str = "main") -> str:
        return git(self.bare, "rev-parse", f"refs/heads/{branch}").strip()

    def rev(self, revision: str) -> str:
        """The object id ``revision`` names on the remote, e.g. ``main:ssot_plan`` (a tree)."""
        return git(self.bare, "rev-parse", "--verify", revision).strip()

    def branches(self) -> list[str]:
        out = git(self.bare, "for-each-ref", "--format=%(refname:short)", "refs/heads/")
        return out.split()

    def message(self, rev: str = "main") -> str:
        return git(self.bare, "log", "-1", "--format=%B", rev)

    def author(self, rev: str = "main") -> str:
        return git(self.bare, "log", "-1", "--format=%an <%ae>", rev).strip()

    def file(self, path: str, rev: str = "main") -> str | None:
        proc = subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=self.bare, capture_output=True, text=True
        )
        return proc.stdout if proc.returncode == 0 else None

    def files(self, rev: str = "main", path: str = ".") -> list[str]:
        return git(self.bare, "ls-tree", "-r", "--name-only", rev, "--", path).split()

    def protect(self, branch: str = "main") -> None:
        """A pre-receive hook refusing updates of ``branch``, as a protected branch does."""
        hook = self.bare / "hooks" / "pre-receive"
        hook.write_text(
            "#!/bin/sh\n"
            "while read old new ref; do\n"
            f'  if [ "$ref" = "refs/heads/{branch}" ]; then\n'
            f'    echo "{branch} is a protected branch" >&2; exit 1\n'
            "  fi\n"
            "done\n"
        )
        hook.chmod(0o755)


def ssot_with_an_ai_commit(root: Path, scratch: Path) -> tuple[Remote, str]:
    """`nexus/ssot` with a good manifest and, on top, the Frenly AI commit to revert (its SHA)."""
    remote = Remote(root, "nexus/ssot", scratch)
    remote.commit({"ssot_plan/ssot_manifest_proposal.yaml": "anchors: 36\n"}, "Anchors v36")
    bad = remote.commit(
        {"ssot_plan/ssot_manifest_proposal.yaml": "anchors: 37 # AI\n"},
        "Frenly AI: rewrite anchors",
    )
    return remote, bad
