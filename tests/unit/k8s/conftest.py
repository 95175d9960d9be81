"""Fixtures for the Kubernetes executor tests: a fake API server and a real client.

The real `kubernetes` client talks HTTP to `FakeKubernetes` through a kubeconfig
file in tmp_path, exactly as the bot does in production with its own kubeconfig.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.kubernetes import FakeKubernetes
from kubernetes import client

from bot.actions.base import ExecutionContext
from bot.actions.kubernetes import kube_api_client

NS = "ai"
APP = "frenly-ai"


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
