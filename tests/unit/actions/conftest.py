"""Fixtures for the action tests: the shipped allow-list, then the executors' worlds.

git and GitHub: bare repositories, the fake GitHub, an App key. Kubernetes: a
fake API server and a real client; the real `kubernetes` client talks HTTP to
`FakeKubernetes` through a kubeconfig file in tmp_path, exactly as the bot does
in production with its own kubeconfig.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client

from bot.actions.base import ExecutionContext
from bot.actions.git_workspace import GitWorkspace
from bot.actions.github import GitHubConnector, PullRequests
from bot.actions.kubernetes_client import kube_api_client
from bot.settings import AllowedTargets
from tests.fakes.github import FakeGitHub
from tests.fakes.kubernetes import FakeKubernetes
from tests.support.shipped import shipped_allowed_targets
from tests.unit.actions.actions_git_support import APP_ID, INSTALLATION_ID, REPO, Remote

NS = "ai"
APP = "frenly-ai"


@pytest.fixture(scope="session")
def shipped_allowed() -> AllowedTargets:
    """The allow-list exactly as config/nexus.yaml ships it."""
    return shipped_allowed_targets()


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


# -- Kubernetes -------------------------------------------------------------------


@pytest.fixture
def kube() -> Iterator[FakeKubernetes]:
    """A cluster with deployment ai/frenly-ai (3 replicas) and ConfigMap ai/ssot-config."""
    with FakeKubernetes() as fake:
        fake.add_deployment(NS, APP, replicas=3, image="registry.example/frenly-ai:1.0")
        fake.add_configmap(NS, "ssot-config", {"enabled": "true", "mode": "auto"})
        yield fake


@pytest.fixture
def kubeconfig(kube: FakeKubernetes, tmp_path: Path) -> Path:
    return kube.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    api = kube_api_client(str(kubeconfig))
    yield api
    api.close()


@pytest.fixture
def context() -> ExecutionContext:
    return ExecutionContext(
        incident_number=42,
        incident_title="SSOT rollback",
        requested_by="U0REQUEST",
        approved_by="U0APPROVE",
    )


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings read the environment and ./config/nexus.yaml: none of the developer's."""
    monkeypatch.chdir(tmp_path)  # no config/nexus.yaml
    for name in (
        "GITHUB_TOKEN",
        "GITHUB_APP_ID",
        "GITHUB_APP_PRIVATE_KEY",
        "NEXUS_CONFIG",
        "KUBECONFIG",
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
    ):
        monkeypatch.delenv(name, raising=False)
