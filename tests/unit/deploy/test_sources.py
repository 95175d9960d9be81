"""The files the manifests are made from are the repository's, and the RBAC is current.

No kubectl needed: kustomize reads no file outside deploy/kubernetes/base, so
the base keeps copies of config/nexus.yaml and playbooks/*.yaml, and the RBAC
is the committed output of `nexus-bot deploy rbac`. Both must follow the
originals; the message says how to bring them back in line.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from bot.commands.deploy import render_rbac
from bot.settings import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[3]
KUBERNETES_DIR = REPO_ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES_DIR / "base"
RBAC_FILE = KUBERNETES_DIR / "rbac" / "rbac.yaml"
COPY_HINT = (
    "cp config/nexus.yaml deploy/kubernetes/base/config/ && "
    "cp playbooks/*.yaml deploy/kubernetes/base/config/playbooks/"
)


@pytest.fixture
def shipped_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The shipped config/nexus.yaml, with no setting from this process's environment."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.setenv("NEXUS_CONFIG", str(REPO_ROOT / "config" / "nexus.yaml"))
    return load_settings()


def test_the_config_copy_is_config_nexus_yaml() -> None:
    original = (REPO_ROOT / "config" / "nexus.yaml").read_bytes()
    assert (BASE / "config" / "nexus.yaml").read_bytes() == original, COPY_HINT


def test_the_playbook_copies_are_the_playbooks() -> None:
    originals = {p.name: p.read_bytes() for p in (REPO_ROOT / "playbooks").glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in (BASE / "config" / "playbooks").glob("*.yaml")}
    assert len(originals) >= 7
    assert sorted(copies) == sorted(originals), COPY_HINT
    stale = sorted(name for name in originals if copies[name] != originals[name])
    assert stale == [], COPY_HINT


def test_the_playbooks_configmap_lists_every_playbook() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text(encoding="utf-8"))
    (generator,) = (
        g for g in kustomization["configMapGenerator"] if g["name"] == "nexus-bot-playbooks"
    )
    listed = sorted(Path(entry).name for entry in generator["files"])
    assert listed == sorted(p.name for p in (REPO_ROOT / "playbooks").glob("*.yaml"))


def test_the_committed_rbac_is_what_the_command_generates_now(shipped_settings: Settings) -> None:
    expected = render_rbac(shipped_settings, "nexus-bot", "nexus-bot")
    assert RBAC_FILE.read_text(encoding="utf-8") == expected, (
        "deploy/kubernetes/rbac/rbac.yaml is stale: "
        "nexus-bot deploy rbac > deploy/kubernetes/rbac/rbac.yaml"
    )


def test_the_rbac_kustomization_sets_no_namespace() -> None:
    """A `namespace:` there would move the Roles out of the target namespaces."""
    for path in (
        KUBERNETES_DIR / "rbac" / "kustomization.yaml",
        *KUBERNETES_DIR.glob("overlays/*/kustomization.yaml"),
    ):
        assert "namespace" not in yaml.safe_load(path.read_text(encoding="utf-8")), path
