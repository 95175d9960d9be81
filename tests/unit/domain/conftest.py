"""Fixtures for the domain tests: the shipped playbooks and config, payload files, settings.

Everything is read from this repository (tests/data, playbooks/, config/), never
from outside it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.domain.playbooks import LoadedPlaybooks
from bot.settings import AllowedTargets, Settings, load_settings
from tests.support.shipped import read_payload, shipped_allowed_targets, shipped_playbooks


@pytest.fixture(scope="session")
def shipped_allowed() -> AllowedTargets:
    """The allow-list exactly as config/nexus.yaml ships it."""
    return shipped_allowed_targets()


@pytest.fixture(scope="session")
def shipped(shipped_allowed: AllowedTargets) -> LoadedPlaybooks:
    """The seven playbooks of playbooks/, validated against the shipped allow-list."""
    return shipped_playbooks(shipped_allowed)


@pytest.fixture(scope="session")
def payload() -> Callable[[str], Any]:
    """Decoded JSON of a file in tests/data."""
    return read_payload


@pytest.fixture
def make_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Settings]:
    """Settings from a clean environment and an optional YAML text, isolated from the repo."""

    def build(yaml_text: str | None = None, **env: str) -> Settings:
        for name in list(os.environ):
            if name.lower() in Settings.model_fields:
                monkeypatch.delenv(name)
        monkeypatch.chdir(tmp_path)
        if yaml_text is not None:
            config = tmp_path / "nexus.yaml"
            config.write_text(yaml_text, encoding="utf-8")
            monkeypatch.setenv("NEXUS_CONFIG", str(config))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return load_settings()

    return build
