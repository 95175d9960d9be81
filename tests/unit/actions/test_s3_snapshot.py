"""s3.restore_snapshot end to end: moto's S3 over HTTP, real git, bare repositories.

The executor builds its boto3 client as the bot does (`s3_client_from_settings`,
credentials from the environment); the tests change the bucket behind its back
with their own client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.actions.base import ActionError, TargetChanged
from bot.actions.catalog import RestoreSnapshot
from bot.actions.git_workspace import GitWorkspace
from bot.actions.github import PullRequests
from bot.actions.s3_snapshot import RestoreSnapshotExecutor
from bot.actions.s3_store import git_blob_id, s3_client_from_settings
from bot.settings import Settings
from tests.fakes.github import FakeGitHub
from tests.support.s3 import AWS_ENV, S3Server
from tests.unit.actions.actions_git_support import CONTEXT, REPO, TRAILER, Remote, git

BUCKET = "nexus-ssot-snapshots"
PARAMS = RestoreSnapshot(repo=REPO, bucket=BUCKET)
GOOD = {"ssot_plan/a.yaml": "a: 1\n", "ssot_plan/b.yaml": "b: 1\n", "ssot_plan/c.yaml": "c: 1\n"}


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    s3_server.use(monkeypatch)
    return s3_server


def executor(
    workspace: GitWorkspace, settings: Settings, pulls: PullRequests | None = None
) -> RestoreSnapshotExecutor:
    return RestoreSnapshotExecutor(workspace, pulls, lambda: s3_client_from_settings(settings))


def wipe(remote: Remote) -> str:
    """The incident: a damaged plan (a edited, a stray z added; b as in the snapshot)."""
    return remote.commit(
        {"ssot_plan/a.yaml": "a: garbage\n", "ssot_plan/z.yaml": "z: 1\n"}, "Frenly AI: regenerate"
    )


def test_preview_lists_snapshots_verifies_and_compares(
    s3: S3Server, remote: Remote, workspace: GitWorkspace
) -> None:
    wipe(remote)
    s3.upload_snapshot(BUCKET, "latest/", GOOD)
    for day in range(20, 27):  # seven dated snapshots: the five newest are offered
        s3.upload_snapshot(BUCKET, f"2026-11-{day}T10-00-00Z/", {"ssot_plan/a.yaml": "a: 0\n"})
    head = remote.head()

    preview = executor(workspace, s3.settings()).preview(PARAMS)

    assert preview.summary == (
        f"Restore ssot_plan/ on {REPO}@main from s3://{BUCKET}/latest/ (+1 ~1 -1), commit and push"
    )
    assert preview.details[0].startswith(
        f"Snapshot s3://{BUCKET}/latest/ssot_plan/: 3 file(s), 15 bytes, newest object 20"
    )
    assert preview.details[0].endswith("checksums: all 3 verified against SHA256SUMS")
    assert preview.details[1] == (
        "ssot_plan/ becomes exactly the snapshot (files not in it are deleted): "
        f"1 added, 1 changed, 1 deleted on main (at {head[:12]}):"
    )
    assert preview.details[2:5] == [
        "  + ssot_plan/c.yaml",
        "  ~ ssot_plan/a.yaml",
        "  - ssot_plan/z.yaml (deleted: not in the snapshot)",
    ]
    assert preview.details[5] == (
        "Other snapshots: 2026-11-26T10-00-00Z, 2026-11-25T10-00-00Z, 2026-11-24T10-00-00Z, "
        "2026-11-23T10-00-00Z, 2026-11-22T10-00-00Z"
    )
    assert preview.details[6].startswith(
        'Then: commit "Restore SSOT from external snapshot nexus-ssot-snapshots/latest" and push'
    )
    snapshot = preview.snapshot
    assert snapshot["branch_head"] == head
    assert snapshot["path_tree"] == remote.rev("main:ssot_plan")
    assert snapshot["manifest_etag"]
    assert sorted(snapshot["objects"]) == sorted(GOOD)
    assert all(set(pin) == {"etag", "sha256"} for pin in snapshot["objects"].values())


def test_restore_lands_on_main_with_exactly_the_snapshot(
    s3: S3Server, remote: Remote, workspace: GitWorkspace
) -> None:
    wipe(remote)
    s3.upload_snapshot(BUCKET, "latest/", GOOD)
    restore = executor(workspace, s3.settings())

    result = restore.execute(PARAMS, restore.preview(PARAMS).snapshot, CONTEXT)

    assert remote.files(path="ssot_plan") == sorted(GOOD)  # z.yaml deleted
    for rel, text in GOOD.items():
        assert remote.file(rel) == text
    assert remote.file("README.md") == "ssot\n"  # outside the path: untouched
    message = remote.message()
    assert message.startswith(f"Restore SSOT from external snapshot {BUCKET}/latest\n")
    assert "checksums verified against SHA256SUMS" in message
    assert message.rstrip().endswith(TRAILER)
    assert result.summary == (
        f"Restored ssot_plan/ on {REPO}@main from s3://{BUCKET}/latest/: pushed to main"
    )
    data = result.data
    assert (data["files_added"], data["files_changed"], data["files_deleted"]) == (1, 1, 1)
    assert (data["commit_sha"], data["pushed_to"], data["pr_url"]) == (remote.head(), "main", None)
    assert data["checksums_verified"] is True

    with pytest.raises(ActionError, match=r"identical to .*: nothing to restore"):
        restore.preview(PARAMS)


def test_blob_ids_are_git_s(tmp_path: Path) -> None:
    for data in (b"hello\n", b"", "anchors: 36 \u2713\n".encode()):
        by_git = git(tmp_path, "hash-object", "--stdin", stdin=data.decode())
        assert git_blob_id(data) == by_git.strip()


def test_checksum_mismatch_is_refused_and_nothing_is_pushed(
    s3: S3Server, remote: Remote, workspace: GitWorkspace
) -> None:
    wipe(remote)
    main = remote.head()
    tampered = {**GOOD, "ssot_plan/b.yaml": "b: 2\n"}
    s3.upload_snapshot(BUCKET, "latest/", tampered, manifest=GOOD)
    restore = executor(workspace, s3.settings())
    with pytest.raises(ActionError, match=r"^refused: checksum mismatch for ssot_plan/b\.yaml$"):
        restore.preview(PARAMS)

    # Approved while good, tampered with before execution: the re-check refuses it.
    s3.upload_snapshot(BUCKET, "latest/", GOOD)
    snapshot = restore.preview(PARAMS).snapshot
    s3.client().put_object(Bucket=BUCKET, Key="latest/ssot_plan/b.yaml", Body=b"b: 2\n")
    with pytest.raises(ActionError, match=r"checksum mismatch for ssot_plan/b\.yaml"):
        restore.execute(PARAMS, snapshot, CONTEXT)
    assert remote.head() == main
    assert remote.branches() == ["main"]


def test_a_file_missing_from_the_manifest_is_refused(
    s3: S3Server, remote: Remote, workspace: GitWorkspace
) -> None:
    wipe(remote)
    s3.upload_snapshot(BUCKET, "latest/", GOOD, manifest={"ssot_plan/a.yaml": "a: 1\n"})
    with pytest.raises(ActionError, match=r"refused: ssot_plan/b\.yaml is not in SHA256SUMS"):
        executor(workspace, s3.settings()).preview(PARAMS)
    s3.upload_snapshot(BUCKET, "latest/", GOOD, manifest={**GOOD, "ssot_plan/gone.yaml": "x"})
    with pytest.raises(ActionError, match=r"SHA256SUMS lists ssot_plan/gone\.yaml, missing"):
        executor(workspace, s3.settings()).preview(PARAMS)


def test_without_a_manifest_the_restore_says_it_is_unverified(
    s3: S3Server, remote: Remote, workspace: GitWorkspace
) -> None:
    wipe(remote)
    s3.upload_snapshot(BUCKET, "2026-11-29T10-00-00Z/", GOOD, manifest=False)
    params = RestoreSnapshot(repo=REPO, bucket=BUCKET, snapshot="2026-11-29T10-00-00Z")
    restore = executor(workspace, s3.settings())
    preview = restore.preview(params)
    assert preview.details[0].endswith("no SHA256SUMS: not verified")
    assert "No other snapshots" in preview.details

    result = restore.execute(params, preview.snapshot, CONTEXT)
    assert remote.message().startswith(
        f"Restore SSOT from external snapshot {BUCKET}/2026-11-29T10-00-00Z\n"
    )
    assert result.data["checksums_verified"] is False
    assert remote.files(path="ssot_plan") == sorted(GOOD)


def test_objects_changed_since_the_preview_are_a_target_change(
    s3: S3Server, remote: Remote, workspace: GitWorkspace
) -> None:
    wipe(remote)
    main = remote.head()
    s3.upload_snapshot(BUCKET, "latest/", GOOD)
    restore = executor(workspace, s3.settings())
    snapshot = restore.preview(PARAMS).snapshot

    rewritten = {**GOOD, "ssot_plan/a.yaml": "a: 3\n"}
    s3.upload_snapshot(BUCKET, "latest/", rewritten)  # manifest updated too: valid, but new
    with pytest.raises(TargetChanged, match=r"changed since the preview \(ssot_plan/a\.yaml"):
        restore.execute(PARAMS, snapshot, CONTEXT)

    s3.upload_snapshot(BUCKET, "latest/", {**GOOD, "ssot_plan/new.yaml": "n\n"})
    snapshot = {**snapshot, "objects": restore.preview(PARAMS).snapshot["objects"]}
    s3.client().delete_object(Bucket=BUCKET, Key="latest/ssot_plan/new.yaml")
    s3.upload_snapshot(BUCKET, "latest/", GOOD)
    with pytest.raises(TargetChanged, match=r"ssot_plan/new\.yaml"):
        restore.execute(PARAMS, snapshot, CONTEXT)
    assert remote.head() == main


def test_path_changed_on_the_branch_since_the_preview_is_a_target_change(
    s3: S3Server, remote: Remote, workspace: GitWorkspace
) -> None:
    wipe(remote)
    s3.upload_snapshot(BUCKET, "latest/", GOOD)
    restore = executor(workspace, s3.settings())
    snapshot = restore.preview(PARAMS).snapshot
    remote.commit({"ssot_plan/hotfix.yaml": "h: 1\n"}, "Hotfix")  # would be deleted unseen
    head = remote.head()
    with pytest.raises(TargetChanged, match="ssot_plan/ on main changed since the preview"):
        restore.execute(PARAMS, snapshot, CONTEXT)
    assert remote.head() == head

    remote.commit({"README.md": "elsewhere\n"}, "Docs")  # outside the path: fine
    restore.execute(PARAMS, restore.preview(PARAMS).snapshot, CONTEXT)
    assert remote.files(path="ssot_plan") == sorted(GOOD)


def test_protected_branch_restore_opens_a_pull_request(
    s3: S3Server,
    remote: Remote,
    workspace: GitWorkspace,
    github: FakeGitHub,
    pulls: PullRequests,
) -> None:
    wipe(remote)
    main = remote.head()
    remote.protect()
    s3.upload_snapshot(BUCKET, "latest/", GOOD)
    restore = executor(workspace, s3.settings(), pulls)

    result = restore.execute(PARAMS, restore.preview(PARAMS).snapshot, CONTEXT)

    (pr,) = github.pulls(REPO)
    assert pr.head_ref.startswith("restore/s3-latest-")
    assert pr.base_ref == "main"
    assert pr.title == f"Restore SSOT from external snapshot {BUCKET}/latest"
    assert remote.files(rev=pr.head_ref, path="ssot_plan") == sorted(GOOD)
    assert remote.head() == main
    assert result.data["pr_url"] == f"{github.url}/{REPO}/pull/{pr.number}"
    assert "main is a protected branch" in result.summary


def test_empty_snapshot_is_refused(s3: S3Server, remote: Remote, workspace: GitWorkspace) -> None:
    s3.upload_snapshot(BUCKET, "2026-11-28T10-00-00Z/", GOOD)
    s3.upload_snapshot(BUCKET, "latest/", {"other/x.yaml": "x\n"}, manifest=False)
    with pytest.raises(ActionError) as refused:
        executor(workspace, s3.settings()).preview(PARAMS)
    assert str(refused.value) == (
        f"snapshot s3://{BUCKET}/latest/ssot_plan/ is empty or does not exist; refused "
        "(restoring it would delete ssot_plan/); snapshots there: 2026-11-28T10-00-00Z"
    )


def test_missing_bucket_is_refused(s3: S3Server, workspace: GitWorkspace) -> None:
    with pytest.raises(ActionError, match=f"^bucket {BUCKET} does not exist at {s3.url} "):
        executor(workspace, s3.settings()).preview(PARAMS)


def test_identical_content_is_refused(
    s3: S3Server, remote: Remote, workspace: GitWorkspace
) -> None:
    s3.upload_snapshot(
        BUCKET, "latest/", {"ssot_plan/a.yaml": "a: 1\n", "ssot_plan/b.yaml": "b: 1\n"}
    )
    with pytest.raises(ActionError, match=r"identical to s3://.*/latest/ssot_plan/: nothing"):
        executor(workspace, s3.settings()).preview(PARAMS)


def test_denied_access_names_the_credential_chain_not_the_secret(
    s3: S3Server, remote: Remote, workspace: GitWorkspace
) -> None:
    s3.upload_snapshot(BUCKET, "latest/", GOOD)
    with s3.enforcing_auth(), pytest.raises(ActionError) as denied:
        executor(workspace, s3.settings()).preview(PARAMS)
    message = str(denied.value)
    assert message.startswith(f"access to bucket {BUCKET} at {s3.url} was denied (")
    assert message.endswith(
        "the bot's credentials come from the standard AWS chain: "
        "environment variables (AWS_ACCESS_KEY_ID)"
    )
    assert AWS_ENV["AWS_SECRET_ACCESS_KEY"] not in message
    assert AWS_ENV["AWS_ACCESS_KEY_ID"] not in message


def test_unreachable_endpoint_is_told(s3: S3Server, workspace: GitWorkspace) -> None:
    closed = Settings(s3_endpoint_url="http://127.0.0.1:9", s3_addressing_style="path")
    with pytest.raises(ActionError, match=r"S3 endpoint http://127\.0\.0\.1:9 is unreachable"):
        executor(workspace, closed).preview(PARAMS)


def test_client_from_settings() -> None:
    client = s3_client_from_settings(
        Settings(s3_endpoint_url="http://minio.example:9000", s3_addressing_style="path")
    )
    assert client.meta.endpoint_url == "http://minio.example:9000"
    options = vars(client.meta.config)  # botocore's stubs leave Config's options untyped
    assert options["s3"] == {"addressing_style": "path"}
    assert (options["connect_timeout"], options["read_timeout"]) == (5, 30)
    assert options["retries"] == {"total_max_attempts": 3, "mode": "standard"}
