"""git.restore_archive: copy the in-repository archive over the SSOT plan, commit, publish.

The source playbook's step is ``cp archive/ssot_backup/* ssot_plan/ && git add
ssot_plan/ && git commit -m "Restore SSOT from archive"``. Its semantics are
kept: archive files overwrite same-named files, nothing is deleted, files only
in ``ssot_plan/`` stay. One deliberate difference: sub-directories of the
archive are copied too (``cp -r``); a bare ``cp`` would skip them with an
"omitting directory" warning nobody reads at 3 a.m.

The preview reads the bot's mirror at the branch head; the archive's tree id is
the snapshot, so execution copies exactly the archive the approver saw.
Identical content is refused ("nothing to restore") rather than committing an
empty change, as ``git.restore_path`` does.
"""

from __future__ import annotations

import shutil
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
from bot.actions.catalog import RestoreArchive
from bot.actions.git_commits import expect_params, snapshot_value, trailer
from bot.actions.git_publish import commit_and_publish, result_links, where_pushed
from bot.actions.git_workspace import GitWorkspace
from bot.actions.registry import ActionParams

if TYPE_CHECKING:
    from bot.actions.github import PullRequests

MAX_LISTED = 25  # file lines on an approval card; the counts always cover all


class RestoreArchiveExecutor:
    action = "git.restore_archive"

    def __init__(self, workspace: GitWorkspace, pulls: PullRequests | None = None) -> None:
        self.workspace = workspace
        self.pulls = pulls

    def preview(self, params: ActionParams) -> Preview:
        p = expect_params(params, RestoreArchive)
        if p.mode == "pull_request" and self.pulls is None:
            raise ActionUnavailable("mode pull_request needs GitHub credentials (GITHUB_TOKEN)")
        ws = self.workspace
        mirror = ws.sync(p.repo)
        head = ws.branch_head(p.repo, mirror, p.branch)
        archive = _archive_tree(ws, mirror, p, head)
        target = dir_tree(ws, mirror, head, p.path)
        if target is None and ws.rev(mirror, f"{head}:{p.path.rstrip('/')}") is not None:
            raise ActionError(f"{p.path} on {p.branch} is a file, not a directory to copy into")
        archived = ls_tree(ws, mirror, archive)
        current = ls_tree(ws, mirror, target) if target else {}
        added = sorted(rel for rel in archived if rel not in current)
        changed = sorted(
            rel for rel in archived if rel in current and current[rel] != archived[rel]
        )
        if not added and not changed:
            raise ActionError(
                f"{p.path} on {p.branch} already matches {p.archive}: nothing to restore"
            )
        counts = _numstat(ws, mirror, target, archive)
        base = p.path.rstrip("/")
        lines = [
            f"{'+' if rel in added else '~'} {base}/{rel} {counts.get(rel, '')}".rstrip()
            for rel in sorted([*added, *changed])
        ]
        kept = len(current) - len(changed)
        details = [
            f"{p.archive} on {p.branch} (at {head[:12]}, tree {archive[:12]}) has "
            f"{len(archived)} file(s); copying it over {p.path} adds {len(added)} and "
            f"changes {len(changed)} file(s); nothing is deleted ({kept} other file(s) "
            f"in {p.path} stay as they are):",
            *capped(lines),
            f'Then: commit "{p.message}" and {then_publish(p.mode, p.branch, self.pulls)}',
        ]
        return Preview(
            summary=f"Restore {p.path} on {p.repo}@{p.branch} from {p.archive} "
            f"({len(added)} added, {len(changed)} changed), commit and "
            f"{'open a pull request' if p.mode == 'pull_request' else 'push'}",
            details=details,
            snapshot={
                "branch_head": head,
                "archive_tree": archive,
                "files": [f"{base}/{rel}" for rel in sorted([*added, *changed])],
            },
        )

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        p = expect_params(params, RestoreArchive)
        if p.mode == "pull_request" and self.pulls is None:
            raise ActionUnavailable("mode pull_request needs GitHub credentials (GITHUB_TOKEN)")
        seen = snapshot_value(snapshot, "archive_tree")
        ws = self.workspace
        with ws.checkout(p.repo, p.branch) as co:
            # Only the archive is pinned: the copy overwrites what is in the path
            # anyway, and deletes nothing, so unrelated commits do not matter.
            now = dir_tree(ws, co.path, co.head, p.archive)
            if now != seen:
                state = "is gone" if now is None else f"changed ({seen[:12]} → {now[:12]})"
                raise TargetChanged(
                    f"{p.archive} on {p.branch} {state} since the preview; nothing was done. "
                    "Preview again."
                )
            restored = _copy(co.path, p.archive, p.path, list(ls_tree(ws, co.path, seen)))
            co.git("add", "--", p.path)
            staged = co.git("diff", "--cached", "--name-only", "-z").stdout.split("\0")
            changed = [name for name in staged if name]
            if not changed:
                raise ActionError(f"{p.path} already matches {p.archive}: nothing to restore")
            message = (
                f"{p.message}\n\nCopies {p.archive} (tree {seen}) over {p.path}; "
                f"nothing deleted.\n\n{trailer(context)}\n"
            )
            new_sha, published = commit_and_publish(
                ws,
                co,
                self.pulls,
                message=message,
                title=p.message,
                want_pr=p.mode == "pull_request",
                side_branch=lambda _: f"restore/archive-{seen[:12]}",
                incident=f"#{context.incident_number}: {context.incident_title}",
            )
        where = where_pushed(published, p.branch)
        return ExecutionResult(
            summary=f"Restored {p.path} on {p.repo}@{p.branch} from {p.archive}: {where}",
            details=[
                f"Commit {new_sha[:12]} changes {len(changed)} file(s):",
                *capped(changed),
                where,
            ],
            links=result_links(ws, p.repo, new_sha, published),
            data={
                "commit_sha": new_sha,
                "archive_tree": seen,
                "files_restored": changed,
                "files_changed": len(changed),
                "files_copied": restored,
                "pushed_to": published.pushed_to,
                "pr_url": published.pr_url,
            },
        )


def ls_tree(workspace: GitWorkspace, cwd: Path, tree: str) -> dict[str, tuple[str, str]]:
    """Every file under ``tree``, by path relative to it: (mode, object id)."""
    out = workspace.run(cwd, "ls-tree", "-r", "-z", "--end-of-options", tree).stdout
    files: dict[str, tuple[str, str]] = {}
    for entry in filter(None, out.split("\0")):
        meta, name = entry.split("\t", 1)
        mode, kind, oid = meta.split()
        if kind == "blob":  # a submodule (commit) has nothing to copy
            files[name] = (mode, oid)
    return files


def dir_tree(workspace: GitWorkspace, cwd: Path, commit: str, path: str) -> str | None:
    """The tree id of directory ``path`` at ``commit``; None if absent or not a directory."""
    oid = workspace.rev(cwd, f"{commit}:{path.rstrip('/')}")
    if oid is None:
        return None
    kind = workspace.run(cwd, "cat-file", "-t", "--end-of-options", oid).stdout.strip()
    return oid if kind == "tree" else None


def _archive_tree(workspace: GitWorkspace, mirror: Path, p: RestoreArchive, head: str) -> str:
    tree = dir_tree(workspace, mirror, head, p.archive)
    if tree is None:
        raise ActionError(f"no {p.archive} on {p.branch} of {p.repo}; nothing to restore from")
    return tree


def _numstat(
    workspace: GitWorkspace, cwd: Path, target: str | None, archive: str
) -> dict[str, str]:
    """Per archive file, the line counts copying it brings: "(+3 -1)" or "(binary)"."""
    if target is None:
        target = workspace.run(cwd, "hash-object", "-t", "tree", "--stdin", stdin="").stdout
    out = workspace.run(
        cwd,
        "diff",
        "--numstat",
        "-z",
        "--no-renames",
        "--diff-filter=AMT",  # what the copy brings; D (only in the path) stays
        "--end-of-options",
        target.strip(),
        archive,
    ).stdout
    counts: dict[str, str] = {}
    for entry in filter(None, out.split("\0")):
        plus, minus, name = entry.split("\t", 2)
        counts[name] = "(binary)" if plus == "-" else f"(+{plus} -{minus})"
    return counts


def _copy(root: Path, archive: str, path: str, files: list[str]) -> int:
    """``cp -r archive/* path/`` in the checkout, file by file (what git tracks, nothing else)."""
    source, target = root / archive.rstrip("/"), root / path.rstrip("/")
    for rel in files:
        src, dst = source / rel, target / rel
        refuse_links_above(root, dst)
        if dst.is_symlink():
            dst.unlink()  # cp would write through the link, outside the path
        elif dst.is_dir():
            shutil.rmtree(dst)  # a file replaces a directory of the same name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(src.readlink())
        else:
            shutil.copy(src, dst)  # content and the executable bit, as git tracks them
    return len(files)


def refuse_links_above(root: Path, dst: Path) -> None:
    """A tracked symlink on the way (ssot_plan -> /etc) must not carry the copy out."""
    for parent in dst.relative_to(root).parents:
        if parent != Path(".") and (root / parent).is_symlink():
            raise ActionError(f"refused: {parent} is a symbolic link in the repository")


def capped(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_LISTED:
        return [f"  {line}" for line in lines]
    return [f"  {line}" for line in lines[: MAX_LISTED - 1]] + [
        f"  … and {len(lines) - MAX_LISTED + 1} more"
    ]


def then_publish(mode: str, branch: str, pulls: PullRequests | None) -> str:
    if mode == "pull_request":
        return f"push a side branch and open a pull request against {branch}"
    if pulls is None:
        return f"push to {branch} (if the push is refused, nothing happens)"
    return f"push to {branch} (if refused: a pull request instead)"
