"""The Kubernetes manifests, rendered once per test session with `kubectl kustomize`
(tests/support/kustomize.py: without kubectl, skipped with the reason, failed under CI=true)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.kustomize import Manifest, find_kubectl, kustomize

REPO_ROOT = Path(__file__).resolve().parents[3]
KUBERNETES_DIR = REPO_ROOT / "deploy" / "kubernetes"
OVERLAYS = ("sqlite", "postgresql")

__all__ = ["Manifest", "find_kubectl", "kustomize"]  # the tests import these here


@pytest.fixture(scope="session")
def rendered(kubectl: str) -> dict[str, list[Manifest]]:
    """Each overlay, rendered once: overlay name → its objects."""
    return {name: kustomize(kubectl, KUBERNETES_DIR / "overlays" / name) for name in OVERLAYS}
