"""git.restore_path: put a path back as it was at an earlier commit, commit it, then push."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.actions.base import (
    ActionError,
    ExecutionContext,
    ExecutionResult,
    Preview,
    TargetChanged,
)
from bot.actions.catalog import RestorePath
from bot.actions.git_commits import (
    commit_info,
    expect_params,
    resolve_commit,
    snapshot_sha,
    snapshot_value,
    stat_lines,
    trailer,
)
from bot.actions.git_publish import commit_and_publish, result_links, where_pushed
from bot.actions.git_workspace import GitWorkspace
from bot.actions.registry import ActionParams

if TYPE_CHECKING:
    from bot.actions.github import PullRequests


class RestorePathExecutor:
    action = "git.restore_path"

    def __init__(self, workspace: GitWorkspace, pulls: PullRequests | None = None) -> None:
        self.workspace = workspace
        self.pulls = pulls

    def preview(self, params: ActionParams) -> Preview:
        p = expect_params(params, RestorePath)
        ws = self.workspace
        mirror = ws.sync(p.repo)
        head = ws.branch_head(p.repo, mirror, p.branch)
        # HEAD~N is resolved now; the snapshot pins the SHA, so execution restores
        # exactly what the approver saw even if the branch moves meanwhile.
        sha = resolve_commit(ws, mirror, p.repo, p.branch, p.commit)
        if _path_object(ws, mirror, sha, p.path) is None:
            raise ActionError(f"{p.path} does not exist at {sha[:12]} in {p.repo}")
        info = commit_info(ws, mirror, sha)
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
            *stat_lines(stat),
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
        p = expect_params(params, RestorePath)
        sha = snapshot_sha(snapshot, p.commit)
        ws = self.workspace
        with ws.checkout(p.repo, p.branch) as co:
            seen_head = snapshot_value(snapshot, "branch_head")
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
            info = commit_info(ws, co.path, sha)
            message = (
                f"{p.message}\n\nRestores {p.path} as of {sha} "
                f'("{info.title}").\n\n{trailer(context)}\n'
            )
            new_sha, published = commit_and_publish(
                ws,
                co,
                self.pulls,
                message=message,
                title=p.message,
                want_pr=False,
                side_branch=lambda _: f"restore/{sha[:12]}",
                incident=f"#{context.incident_number}: {context.incident_title}",
            )
        where = where_pushed(published, p.branch)
        return ExecutionResult(
            summary=f"Restored {p.path} on {p.repo}@{p.branch} to {sha[:12]}: {where}",
            details=[f"Commit {new_sha[:12]} changes {len(changed)} file(s)", where],
            links=result_links(ws, p.repo, new_sha, published),
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
