"""Fixtures for the git and GitHub executors: bare repositories, the fake GitHub, an App key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from actions_git_support import APP_ID, INSTALLATION_ID, REPO, Remote
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fakes.github import FakeGitHub

from bot.actions.git_workspace import GitWorkspace
from bot.actions.github import GitHubConnector, PullRequests


@pytest.fixture
def remote_root(tmp_path: Path) -> Path:
    return tmp_path / "remote"


@pytest.fixture
def remote(remote_root: Path, tmp_path: Path) -> Remote:
    """acme/ssot with an SSOT plan of two files, then a commit that damages it."""
    remote = Remote(remote_root, REPO, tmp_path)
    remote.commit(
        {"ssot_plan/a.yaml": "a: 1\n", "ssot_plan/b.yaml": "b: 1\n", "README.md": "ssot\n"},
        "Initial plan",
    )
    return remote


@pytest.fixture
def workspace(remote_root: Path, tmp_path: Path) -> GitWorkspace:
    return GitWorkspace(f"file://{remote_root}", tmp_path / "work")


@pytest.fixture(scope="session")
def app_key() -> tuple[str, str]:
    """A GitHub App's RSA key pair: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture
def github(remote_root: Path, app_key: tuple[str, str]) -> Iterator[FakeGitHub]:
    with FakeGitHub(
        app_id=APP_ID,
        app_public_key=app_key[1],
        installations={REPO: INSTALLATION_ID},
        git_root=remote_root,
    ) as fake:
        fake.add_repo(REPO)
        yield fake


@pytest.fixture
def connector(github: FakeGitHub) -> GitHubConnector:
    return GitHubConnector(github.url, token=github.token)


@pytest.fixture
def pulls(connector: GitHubConnector) -> PullRequests:
    return PullRequests(connector)
