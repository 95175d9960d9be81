"""git.revert: undo a commit with ``git revert``, then push it (or open a pull request)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.actions.base import (
    ActionError,
    ActionUnavailable,
    ExecutionContext,
    ExecutionResult,
    Preview,
    TargetChanged,
)
from bot.actions.catalog import RevertCommit
from bot.actions.git_commits import (
    commit_info,
    expect_params,
    resolve_commit,
    snapshot_sha,
    stat_lines,
    trailer,
)
from bot.actions.git_publish import publish, result_links, where_pushed
from bot.actions.git_workspace import GitWorkspace
from bot.actions.registry import ActionParams

if TYPE_CHECKING:
    from bot.actions.github import PullRequests


class RevertExecutor:
    action = "git.revert"

    def __init__(self, workspace: GitWorkspace, pulls: PullRequests | None = None) -> None:
        self.workspace = workspace
        self.pulls = pulls

    def preview(self, params: ActionParams) -> Preview:
        p = expect_params(params, RevertCommit)
        if p.mode == "pull_request" and self.pulls is None:
            raise ActionUnavailable("mode pull_request needs GitHub credentials (GITHUB_TOKEN)")
        ws = self.workspace
        mirror = ws.sync(p.repo)
        head = ws.branch_head(p.repo, mirror, p.branch)
        sha = resolve_commit(ws, mirror, p.repo, p.branch, p.commit)
        if not ws.is_ancestor(mirror, sha, head):
            raise ActionError(f"commit {sha[:12]} is not on {p.branch} of {p.repo}")
        reverted_by = _reverted_by(ws, mirror, sha, head)
        if reverted_by:
            raise ActionError(f"{sha[:12]} was already reverted by {reverted_by[:12]}")
        info = commit_info(ws, mirror, sha)
        details = [f'Commit {sha[:12]} "{info.title}"', f"Author: {info.author}, {info.date}"]
        if len(info.parents) > 1:
            stat = ws.run(mirror, "diff", "--stat", "--end-of-options", info.parents[0], sha).stdout
            details.append(
                f"Merge commit (parents {', '.join(s[:12] for s in info.parents)}): "
                "reverted against its first parent (-m 1), undoing what the merge brought in"
            )
        else:
            stat = ws.run(mirror, "show", "--stat", "--format=", "--end-of-options", sha).stdout
        details += ["Changes undone:", *stat_lines(stat)]
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
        p = expect_params(params, RevertCommit)
        sha = snapshot_sha(snapshot, p.commit)
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
            info = commit_info(ws, co.path, sha)
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
            published = publish(
                ws,
                co,
                self.pulls,
                want_pr=p.mode == "pull_request",
                side_branch=f"revert/{short}",
                title=f'Revert "{info.title}"',
                body=f"{message}\nOpened by the NEXUS incident bot for incident "
                f"#{context.incident_number}: {context.incident_title}",
            )
        where = where_pushed(published, p.branch)
        return ExecutionResult(
            summary=f"Reverted {short} on {p.repo}@{p.branch}: {where}",
            details=[f"Revert commit {new_sha[:12]}", f'Reverted "{info.title}"', where],
            links=result_links(ws, p.repo, new_sha, published),
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
