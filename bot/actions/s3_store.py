"""Reading external SSOT snapshots from S3 (or MinIO): listing, downloading, checksums.

The layout is the playbook's: ``s3://<bucket>/<prefix><snapshot>/<path>…``
(``aws s3 cp s3://nexus-ssot-snapshots/latest/ssot_plan/ ./ssot_plan/
--recursive``), with an optional ``<prefix><snapshot>/SHA256SUMS`` in
``sha256sum`` format whose paths are relative to the snapshot's root.

Everything a snapshot restore reads is downloaded into memory (the SSOT plan is
YAML, a few MB at most): the bytes are hashed for the manifest and for git's
blob ids, and the very bytes verified are the ones committed. A cap keeps a
wrong prefix from pulling a bucket's worth of data into the bot.

Every S3 failure becomes an `ActionError` worded for the person at the approval
card: which bucket, which endpoint, where the credentials came from — never a
credential itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from bot.actions.base import ActionError, ActionUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from bot.settings import Settings

S3ClientFactory = Callable[[], "S3Client"]

MAX_TOTAL_BYTES = 50 * 1024 * 1024
MAX_FILES = 5000
MANIFEST = "SHA256SUMS"
# sha256sum's output: "<hex>  <path>" (text mode) or "<hex> *<path>" (binary mode).
_MANIFEST_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")
_ACCESS_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
}
# botocore's names for where the standard chain found credentials, for humans.
_CREDENTIAL_SOURCES = {
    "env": "environment variables (AWS_ACCESS_KEY_ID)",
    "shared-credentials-file": "the shared credentials file (~/.aws/credentials)",
    "config-file": "the AWS config file (~/.aws/config)",
    "iam-role": "the instance role (EC2 metadata)",
    "container-role": "the container role (ECS/EKS pod identity)",
    "assume-role": "an assumed role from the AWS config",
    "assume-role-with-web-identity": "web identity (IRSA, AWS_WEB_IDENTITY_TOKEN_FILE)",
    "sso": "AWS SSO",
}


def s3_client_from_settings(settings: Settings) -> S3Client:
    """A client for S3 or an S3-compatible store; credentials from the standard AWS chain."""
    config = Config(
        s3={"addressing_style": settings.s3_addressing_style},
        # A restore is interactive: fail in seconds with a clear error rather than
        # leave the approval card spinning on an unreachable endpoint.
        connect_timeout=5,
        read_timeout=30,
        retries={"total_max_attempts": 3, "mode": "standard"},
    )
    return boto3.client("s3", endpoint_url=settings.s3_endpoint_url, config=config)


def credential_source() -> str:
    """Where the standard chain finds credentials now (never the credentials themselves)."""
    try:
        found = botocore.session.get_session().get_credentials()
    except BotoCoreError as exc:
        return f"the standard AWS chain, which failed: {type(exc).__name__}"
    if found is None:
        return "the standard AWS chain, which found none"
    method = str(found.method)
    return f"the standard AWS chain: {_CREDENTIAL_SOURCES.get(method, method)}"


def where(client: S3Client) -> str:
    return client.meta.endpoint_url or "S3"


@contextlib.contextmanager
def s3_errors(client: S3Client, bucket: str, doing: str) -> Iterator[None]:
    """S3 failures as an `ActionError` saying what to check; nothing was changed."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            raise ActionError(
                f"bucket {bucket} does not exist at {where(client)} (while {doing})"
            ) from None
        if code in _ACCESS_CODES or status == 403:
            raise ActionError(
                f"access to bucket {bucket} at {where(client)} was denied ({code or status}) "
                f"while {doing}; the bot's credentials come from {credential_source()}"
            ) from None
        message = str(error.get("Message", "")) or str(status)
        raise ActionError(f"S3 refused {doing} in {bucket}: {code} {message}".strip()) from None
    except NoCredentialsError:
        raise ActionUnavailable(
            f"no AWS credentials for bucket {bucket}: the standard chain found none "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, or the pod's role)"
        ) from None
    except (BotoConnectionError, ReadTimeoutError) as exc:  # unreachable, DNS, timeouts
        raise ActionError(
            f"the S3 endpoint {where(client)} is unreachable while {doing} "
            f"({type(exc).__name__}); check S3_ENDPOINT_URL and the network"
        ) from None
    except BotoCoreError as exc:
        raise ActionError(f"S3 failed while {doing} in {bucket}: {exc}") from None


@dataclass(frozen=True)
class SnapshotFile:
    rel: str  # relative to the snapshot's root, e.g. ssot_plan/a.yaml
    key: str
    size: int
    etag: str
    modified: datetime


def snapshot_names(client: S3Client, bucket: str, prefix: str) -> list[str]:
    """The snapshots under ``prefix`` (``latest``, dated ones), by name, newest name first."""
    names: list[str] = []
    with s3_errors(client, bucket, f"listing the snapshots under {prefix or '/'}"):
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                name = common.get("Prefix", "")[len(prefix) :].rstrip("/")
                if name:
                    names.append(name)
    # Dated names (2026-11-29T10-00-00Z) sort by time, and "latest" sorts before
    # them, as it should: listing each snapshot's objects for dates would cost more.
    return sorted(names, reverse=True)


def list_files(client: S3Client, bucket: str, root: str, path: str) -> list[SnapshotFile]:
    """The objects under ``<root><path>/`` (``root`` = ``<prefix><snapshot>/``), by path."""
    under = f"{root}{path.strip('/')}/"
    files: list[SnapshotFile] = []
    with s3_errors(client, bucket, f"listing s3://{bucket}/{under}"):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=under):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/"):
                    continue  # a console "folder" marker, not a file
                rel = safe_relative(key[len(root) :])
                files.append(SnapshotFile(rel, key, obj["Size"], obj["ETag"], obj["LastModified"]))
                if len(files) > MAX_FILES:
                    raise ActionError(f"s3://{bucket}/{under} has over {MAX_FILES} files; refused")
    total = sum(f.size for f in files)
    if total > MAX_TOTAL_BYTES:
        raise ActionError(
            f"s3://{bucket}/{under} holds {total} bytes, over the {MAX_TOTAL_BYTES} bytes a "
            "restore downloads to verify; refused (wrong prefix?)"
        )
    return sorted(files, key=lambda f: f.rel)


def safe_relative(rel: str) -> str:
    """A key's path below the snapshot root, refused if it could escape the checkout."""
    parts = rel.split("/")
    if any(part in ("", ".", "..", ".git") for part in parts) or "\\" in rel or "\0" in rel:
        raise ActionError(f"refused: the snapshot holds an unsafe key name {rel[:120]!r}")
    return rel


def download(client: S3Client, bucket: str, key: str) -> tuple[bytes, str]:
    """(the object's bytes, its ETag as served with them)."""
    with s3_errors(client, bucket, f"reading s3://{bucket}/{key}"):
        return _get(client, bucket, key)


def read_manifest(client: S3Client, bucket: str, root: str) -> tuple[dict[str, str], str] | None:
    """``<root>SHA256SUMS`` as {path: sha256} and its ETag, or None when there is none."""
    key = f"{root}{MANIFEST}"
    with s3_errors(client, bucket, f"reading s3://{bucket}/{key}"):
        try:
            data, etag = _get(client, bucket, key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
    return parse_manifest(data, key), etag


def _get(client: S3Client, bucket: str, key: str) -> tuple[bytes, str]:
    response = client.get_object(Bucket=bucket, Key=key)
    with contextlib.closing(response["Body"]) as body:
        data = body.read(MAX_TOTAL_BYTES + 1)
    if len(data) > MAX_TOTAL_BYTES:
        raise ActionError(f"s3://{bucket}/{key} is over {MAX_TOTAL_BYTES} bytes; refused")
    return data, response["ETag"]


def parse_manifest(data: bytes, key: str) -> dict[str, str]:
    sums: dict[str, str] = {}
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        match = _MANIFEST_LINE.fullmatch(line.rstrip("\r"))
        if match is None:
            raise ActionError(f"refused: {key} line {number} is not in sha256sum format")
        sums[match.group(2).removeprefix("./")] = match.group(1).lower()
    return sums


def verify(files: dict[str, bytes], manifest: dict[str, str], path: str) -> None:
    """Every file hashes as the manifest says, and the manifest lists no file that is missing."""
    for rel, data in sorted(files.items()):
        expected = manifest.get(rel)
        if expected is None:
            raise ActionError(f"refused: {rel} is not in {MANIFEST} (not verifiable)")
        if hashlib.sha256(data).hexdigest() != expected:
            raise ActionError(f"refused: checksum mismatch for {rel}")
    under = f"{path.strip('/')}/"
    missing = sorted(rel for rel in manifest if rel.startswith(under) and rel not in files)
    if missing:
        raise ActionError(
            f"refused: {MANIFEST} lists {missing[0]}"
            f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}, "
            "missing from the snapshot"
        )


def git_blob_id(data: bytes, object_format: str = "sha1") -> str:
    """The id git gives a blob with these bytes: compare with ``ls-tree`` without reading blobs."""
    header = b"blob %d\0" % len(data)
    return hashlib.new(object_format, header + data).hexdigest()
