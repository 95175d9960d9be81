"""A real S3 protocol server for tests: moto in server mode, spoken to over HTTP.

The bot's code talks to it exactly as to S3 or MinIO: a boto3 client built by
`s3_client_from_settings` with ``S3_ENDPOINT_URL`` pointing here and
credentials from the standard chain (environment variables the test sets). No
boto3 call is mocked; moto answers real signed HTTP requests.

Typical use (a module-scoped server, state reset for each test)::

    @pytest.fixture(scope="module")
    def s3_server() -> Iterator[S3Server]:
        with S3Server() as server:
            yield server

    @pytest.fixture
    def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
        s3_server.use(monkeypatch)  # AWS_* env for the standard chain, fresh state
        return s3_server

    s3.upload_snapshot("nexus-ssot-snapshots", "latest/", {"ssot_plan/a.yaml": "a: 1\\n"})
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from bot.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
# What the standard credential chain finds in a test: these variables only, no
# ~/.aws of the machine running the tests, no instance metadata lookups.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIATESTNEXUSBOT0001",
    "AWS_SECRET_ACCESS_KEY": "test-secret-not-real",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
_UNSET = ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")

Content = str | bytes


def sha256sums(files: Mapping[str, Content]) -> bytes:
    """A SHA256SUMS file as ``sha256sum`` writes it: ``<hex>  <path>`` per line."""
    lines = [f"{hashlib.sha256(_bytes(data)).hexdigest()}  {rel}\n" for rel, data in files.items()]
    return "".join(sorted(lines, key=lambda line: line.split("  ", 1)[1])).encode()


def _bytes(data: Content) -> bytes:
    return data.encode() if isinstance(data, str) else data


class S3Server:
    """moto's S3 on 127.0.0.1 and a free port, for as long as the ``with`` block lasts."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.url = ""

    def __enter__(self) -> S3Server:
        # One line per request would bury a failing test's own log in captured output.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.stop()

    def use(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Credentials for the standard chain in the environment, and an empty server."""
        for name, value in AWS_ENV.items():
            monkeypatch.setenv(name, value)
        for name in _UNSET:
            monkeypatch.delenv(name, raising=False)
        self.reset()

    def reset(self) -> None:
        """Every bucket gone (moto's state lives in this process, shared by its servers)."""
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def settings(self) -> Settings:
        """The bot's settings pointing at this server (path-style, as for MinIO)."""
        return Settings(s3_endpoint_url=self.url, s3_addressing_style="path")

    def client(self) -> S3Client:
        """A test's own client, to set up and change buckets behind the bot's back."""
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    def upload_snapshot(
        self,
        bucket: str,
        root: str,
        files: Mapping[str, Content],
        *,
        manifest: bool | Mapping[str, Content] = True,
    ) -> None:
        """Put ``files`` (paths relative to the snapshot) under ``root`` (``latest/``), with a
        SHA256SUMS of them, or of ``manifest`` when given (to make a mismatch), or none."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
        for rel, data in files.items():
            client.put_object(Bucket=bucket, Key=f"{root}{rel}", Body=_bytes(data))
        if manifest is not False:
            listed = files if manifest is True else manifest
            client.put_object(Bucket=bucket, Key=f"{root}SHA256SUMS", Body=sha256sums(listed))

    @contextlib.contextmanager
    def enforcing_auth(self) -> Iterator[None]:
        """moto checks credentials for a while (unknown keys get 403), then stops again."""
        answer = requests.post(f"{self.url}/moto-api/reset-auth", data=b"0", timeout=10)
        answer.raise_for_status()
        previous = answer.json()["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]
        try:
            yield
        finally:
            requests.post(
                f"{self.url}/moto-api/reset-auth", data=previous.encode(), timeout=10
            ).raise_for_status()
