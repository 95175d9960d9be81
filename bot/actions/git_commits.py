"""What the git executors read from a repository and from an approval's snapshot.

Parameters and snapshots come back from the approval as plain data, so each is
checked again here; commits are described (title, author, diffstat) for the
preview and the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bot.actions.base import ActionError, ExecutionContext
from bot.actions.git_workspace import GitWorkspace
from bot.actions.registry import ActionParams

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_MAX_STAT_LINES = 25

P = TypeVar("P", bound=ActionParams)


def trailer(context: ExecutionContext) -> str:
    """A git trailer tying the commit to the incident and both people (audit)."""
    return (
        f"Incident: #{context.incident_number}, requested by <@{context.requested_by}>, "
        f"approved by <@{context.approved_by}>"
    )


def expect_params(params: ActionParams, kind: type[P]) -> P:
    if not isinstance(params, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(params).__name__}")
    return params


def snapshot_value(snapshot: dict[str, Any], key: str) -> str:
    value = snapshot.get(key)
    if not isinstance(value, str):
        raise ActionError(f"the approval's preview lacks {key!r}; preview again")
    return value


def snapshot_sha(snapshot: dict[str, Any], requested: str) -> str:
    sha = snapshot_value(snapshot, "sha")
    # The snapshot must be of the very commit the params name (hex form only; HEAD~N moves).
    if not _SHA.fullmatch(sha) or (
        re.fullmatch(r"[0-9a-fA-F]+", requested) and not sha.startswith(requested.lower())
    ):
        raise ActionError(f"the preview was of another commit ({sha[:12]}); preview again")
    return sha


def resolve_commit(
    workspace: GitWorkspace, mirror: Path, repo: str, branch: str, revision: str
) -> str:
    """A full SHA for ``revision``; ``HEAD`` means the head of ``branch`` now."""
    requested = revision
    if revision.startswith("HEAD"):
        revision = f"refs/heads/{branch}{revision[4:]}"
    sha = workspace.rev(mirror, f"{revision}^{{commit}}")
    if sha is None:
        raise ActionError(f"commit {requested} not found in {repo} (branch {branch})")
    return sha


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    parents: list[str]
    author: str
    date: str
    title: str


def commit_info(workspace: GitWorkspace, cwd: Path, sha: str) -> CommitInfo:
    out = workspace.run(
        cwd, "show", "-s", "--format=%H%x00%P%x00%an <%ae>%x00%aI%x00%s", "--end-of-options", sha
    ).stdout.rstrip("\n")
    full, parents, author, date, title = out.split("\x00", 4)
    return CommitInfo(full, parents.split(), author, date, title)


def stat_lines(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > _MAX_STAT_LINES:
        lines = [*lines[: _MAX_STAT_LINES - 1], f"… {len(lines) - _MAX_STAT_LINES} more", lines[-1]]
    return lines
