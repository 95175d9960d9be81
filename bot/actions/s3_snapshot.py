"""s3.restore_snapshot: make the SSOT plan exactly an external snapshot's, commit, publish.

The playbook's ``aws s3 cp s3://nexus-ssot-snapshots/latest/ssot_plan/
./ssot_plan/ --recursive``, with what a human should do and rarely does at
3 a.m.: the checksums in the snapshot's ``SHA256SUMS`` are verified (one
mismatch refuses the whole restore), and the approver sees which files are
added, changed and *deleted* — the path becomes the snapshot, so files that
are not in it go. Reading S3 lives in `bot.actions.s3_store`.

The preview downloads every file (hashing needs the bytes) and compares git
blob ids with the branch's tree, so no blob is read from the mirror. Its
snapshot pins each object's ETag and sha256, the manifest's ETag and the
path's tree: execution re-reads them all and refuses (`TargetChanged`) if any
moved, then commits the very bytes it verified.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError

from bot.actions.base import (
    ActionError,
    ActionUnavailable,
    ExecutionContext,
    ExecutionResult,
    Preview,
    TargetChanged,
)
from bot.actions.catalog import RestoreSnapshot
from bot.actions.git_archive import capped, dir_tree, ls_tree, refuse_links_above, then_publish
from bot.actions.git_commits import expect_params, snapshot_value, trailer
from bot.actions.git_publish import commit_and_publish, result_links, where_pushed
from bot.actions.git_workspace import GitWorkspace
from bot.actions.registry import ActionParams
from bot.actions.s3_store import (
    MANIFEST,
    S3ClientFactory,
    download,
    git_blob_id,
    list_files,
    read_manifest,
    snapshot_names,
    verify,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from bot.actions.github import PullRequests

OTHER_SNAPSHOTS = 5


@dataclass(frozen=True)
class _Loaded:
    """A snapshot as read and verified: its files' bytes and what pins them."""

    files: dict[str, bytes]  # by path relative to the snapshot root (= in the repository)
    etags: dict[str, str]
    newest: str  # the newest LastModified, ISO
    manifest_etag: str | None

    def pins(self) -> dict[str, dict[str, str]]:
        return {
            rel: {"etag": self.etags[rel], "sha256": hashlib.sha256(data).hexdigest()}
            for rel, data in self.files.items()
        }


@dataclass(frozen=True)
class _Changes:
    added: list[str]
    changed: list[str]
    removed: list[str]


class RestoreSnapshotExecutor:
    action = "s3.restore_snapshot"

    def __init__(
        self,
        workspace: GitWorkspace,
        pulls: PullRequests | None,
        s3_client_factory: S3ClientFactory,
    ) -> None:
        self.workspace = workspace
        self.pulls = pulls
        self._s3 = s3_client_factory

    def preview(self, params: ActionParams) -> Preview:
        p = expect_params(params, RestoreSnapshot)
        _needs_pulls(p, self.pulls)
        client = self._client()
        names = snapshot_names(client, p.bucket, p.prefix)
        others = [name for name in names if name != p.snapshot][:OTHER_SNAPSHOTS]
        loaded = _load(client, p, others)
        ws = self.workspace
        mirror = ws.sync(p.repo)
        head = ws.branch_head(p.repo, mirror, p.branch)
        tree = _path_tree(ws, mirror, head, p.path)
        changes = _compare(loaded.files, ws, mirror, tree, p.path)
        source = f"s3://{p.bucket}/{p.prefix}{p.snapshot}/"
        if not (changes.added or changes.changed or changes.removed):
            raise ActionError(
                f"{p.path} on {p.branch} is identical to {source}{p.path}: nothing to restore"
            )
        size = sum(len(data) for data in loaded.files.values())
        checked = (
            f"checksums: all {len(loaded.files)} verified against {MANIFEST}"
            if loaded.manifest_etag
            else f"no {MANIFEST}: not verified"
        )
        listed = [
            *(f"+ {rel}" for rel in changes.added),
            *(f"~ {rel}" for rel in changes.changed),
            *(f"- {rel} (deleted: not in the snapshot)" for rel in changes.removed),
        ]
        details = [
            f"Snapshot {source}{p.path}: {len(loaded.files)} file(s), {size} bytes, "
            f"newest object {loaded.newest}; {checked}",
            f"{p.path} becomes exactly the snapshot (files not in it are deleted): "
            f"{len(changes.added)} added, {len(changes.changed)} changed, "
            f"{len(changes.removed)} deleted on {p.branch} (at {head[:12]}):",
            *capped(listed),
            f"Other snapshots: {', '.join(others)}" if others else "No other snapshots",
            f'Then: commit "{p.message} {p.bucket}/{p.prefix}{p.snapshot}" and '
            f"{then_publish(p.mode, p.branch, self.pulls)}",
        ]
        return Preview(
            summary=f"Restore {p.path} on {p.repo}@{p.branch} from {source} "
            f"(+{len(changes.added)} ~{len(changes.changed)} -{len(changes.removed)}), "
            f"commit and {'open a pull request' if p.mode == 'pull_request' else 'push'}",
            details=details,
            snapshot={
                "source": f"{source}{p.path}",
                "objects": loaded.pins(),
                "manifest_etag": loaded.manifest_etag,
                "branch_head": head,
                "path_tree": tree,
            },
        )

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        p = expect_params(params, RestoreSnapshot)
        _needs_pulls(p, self.pulls)
        seen_head = snapshot_value(snapshot, "branch_head")
        loaded = _load(self._client(), p, [])
        _same_objects(p, snapshot, loaded)
        ws = self.workspace
        with ws.checkout(p.repo, p.branch) as co:
            # The restore deletes what is not in the snapshot: a path changed since
            # the preview would lose files the approver never saw listed.
            now = _path_tree(ws, co.path, co.head, p.path)
            if co.head != seen_head and now != snapshot.get("path_tree"):
                raise TargetChanged(
                    f"{p.path} on {p.branch} changed since the preview ({seen_head[:12]} → "
                    f"{co.head[:12]}); nothing was done. Preview again."
                )
            co.git("rm", "-r", "-q", "--ignore-unmatch", "--", p.path)
            for rel, data in loaded.files.items():
                target = co.path / rel
                refuse_links_above(co.path, target)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                target.chmod(0o644)  # plain files: S3 keeps no modes
            co.git("add", "--all", "--", p.path)
            status = co.git("diff", "--cached", "--name-status", "--no-renames", "-z").stdout
            fields = [field for field in status.split("\0") if field]
            counts = {"A": 0, "M": 0, "D": 0}
            for kind in fields[::2]:
                counts["M" if kind[0] == "T" else kind[0]] += 1
            if not fields:
                raise ActionError(f"{p.path} is already identical to the snapshot; nothing to do")
            key = f"{p.bucket}/{p.prefix}{p.snapshot}"
            verified = (
                f"checksums verified against {MANIFEST}"
                if loaded.manifest_etag
                else f"no {MANIFEST}: not verified"
            )
            message = (
                f"{p.message} {key}\n\nMakes {p.path} exactly s3://{key}/{p.path} "
                f"({len(loaded.files)} file(s), {verified}); files not in the snapshot "
                f"are deleted.\n\n{trailer(context)}\n"
            )
            new_sha, published = commit_and_publish(
                ws,
                co,
                self.pulls,
                message=message,
                title=f"{p.message} {key}",
                want_pr=p.mode == "pull_request",
                side_branch=lambda sha: f"restore/s3-{_branch_safe(p.snapshot)}-{sha[:8]}",
                incident=f"#{context.incident_number}: {context.incident_title}",
            )
        where = where_pushed(published, p.branch)
        return ExecutionResult(
            summary=f"Restored {p.path} on {p.repo}@{p.branch} from s3://{key}/: {where}",
            details=[
                f"Commit {new_sha[:12]}: {counts['A']} added, {counts['M']} changed, "
                f"{counts['D']} deleted; {verified}",
                where,
            ],
            links=result_links(ws, p.repo, new_sha, published),
            data={
                "commit_sha": new_sha,
                "source": f"s3://{key}/{p.path}",
                "objects": loaded.pins(),
                "checksums_verified": loaded.manifest_etag is not None,
                "files_added": counts["A"],
                "files_changed": counts["M"],
                "files_deleted": counts["D"],
                "pushed_to": published.pushed_to,
                "pr_url": published.pr_url,
            },
        )

    def _client(self) -> S3Client:
        try:
            return self._s3()
        except (BotoCoreError, ValueError) as exc:  # a malformed S3_ENDPOINT_URL, a bad region
            raise ActionUnavailable(f"no S3 client: {exc} (check S3_ENDPOINT_URL)") from None


def _load(client: S3Client, p: RestoreSnapshot, others: list[str]) -> _Loaded:
    """List, download and (with a manifest) verify the snapshot's files under the path."""
    root = f"{p.prefix}{p.snapshot}/"
    listed = list_files(client, p.bucket, root, p.path)
    if not listed:
        hint = f"; snapshots there: {', '.join(others)}" if others else ""
        raise ActionError(
            f"snapshot s3://{p.bucket}/{root}{p.path} is empty or does not exist; "
            f"refused (restoring it would delete {p.path}){hint}"
        )
    files: dict[str, bytes] = {}
    etags: dict[str, str] = {}
    for item in listed:
        data, etag = download(client, p.bucket, item.key)
        if etag != item.etag:
            # Rewritten between listing and reading: whichever call this is, stop here.
            raise TargetChanged(f"s3://{p.bucket}/{item.key} changed while being read; try again")
        files[item.rel], etags[item.rel] = data, etag
    manifest = read_manifest(client, p.bucket, root)
    if manifest is not None:
        verify(files, manifest[0], p.path)
    newest = max(item.modified for item in listed).isoformat(timespec="seconds")
    return _Loaded(files, etags, newest, manifest[1] if manifest else None)


def _same_objects(p: RestoreSnapshot, snapshot: dict[str, Any], loaded: _Loaded) -> None:
    """The snapshot's objects (and manifest) are the ones the approver saw."""
    seen = snapshot.get("objects")
    if not isinstance(seen, dict) or not seen:
        raise ActionError("the approval's preview lacks the snapshot's objects; preview again")
    now = loaded.pins()
    source = f"s3://{p.bucket}/{p.prefix}{p.snapshot}/"
    moved = sorted(set(seen) ^ set(now)) or sorted(rel for rel in now if now[rel] != seen[rel])
    if moved:
        raise TargetChanged(
            f"{source} changed since the preview ({', '.join(moved[:5])}"
            f"{' …' if len(moved) > 5 else ''} added, removed or rewritten); nothing was done. "
            "Preview again."
        )
    if loaded.manifest_etag != snapshot.get("manifest_etag"):
        raise TargetChanged(f"{source}{MANIFEST} changed since the preview; nothing was done")


def _path_tree(workspace: GitWorkspace, cwd: Path, commit: str, path: str) -> str | None:
    """The path's tree at ``commit``; None if absent. A file there is refused."""
    tree = dir_tree(workspace, cwd, commit, path)
    if tree is None and workspace.rev(cwd, f"{commit}:{path.rstrip('/')}") is not None:
        raise ActionError(f"{path} is a file in the repository, not a directory to restore")
    return tree


def _compare(
    files: dict[str, bytes], ws: GitWorkspace, cwd: Path, tree: str | None, path: str
) -> _Changes:
    """What making ``path`` exactly ``files`` does, by git blob id (no blob is read)."""
    base = path.rstrip("/")
    current = (
        {f"{base}/{rel}": entry for rel, entry in ls_tree(ws, cwd, tree).items()} if tree else {}
    )
    object_format = ws.run(cwd, "rev-parse", "--show-object-format").stdout.strip() or "sha1"
    wanted = {rel: ("100644", git_blob_id(data, object_format)) for rel, data in files.items()}
    return _Changes(
        added=sorted(set(wanted) - set(current)),
        changed=sorted(rel for rel in wanted if rel in current and current[rel] != wanted[rel]),
        removed=sorted(set(current) - set(wanted)),
    )


def _needs_pulls(p: RestoreSnapshot, pulls: PullRequests | None) -> None:
    if p.mode == "pull_request" and pulls is None:
        raise ActionUnavailable("mode pull_request needs GitHub credentials (GITHUB_TOKEN)")


def _branch_safe(name: str) -> str:
    """A snapshot name as part of a branch name (``:`` and ``..`` are not allowed there)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "snapshot"
