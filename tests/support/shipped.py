"""The configuration this repository ships (config/nexus.yaml, playbooks/) and tests/data.

Plain functions, so that the conftests of several test packages (domain, actions,
slack) can offer the same fixtures without depending on each other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bot.domain.playbooks import LoadedPlaybooks, load_playbooks
from bot.settings import AllowedTargets
from bot.yamlfile import load_yaml_mapping

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT / "tests" / "data"


def shipped_allowed_targets() -> AllowedTargets:
    """The allow-list exactly as config/nexus.yaml ships it."""
    data, _ = load_yaml_mapping(REPO_ROOT / "config" / "nexus.yaml")
    return AllowedTargets.model_validate(data["allowed_targets"])


def shipped_playbooks(allowed: AllowedTargets) -> LoadedPlaybooks:
    """The seven playbooks of playbooks/, validated against ``allowed``."""
    return load_playbooks([REPO_ROOT / "playbooks"], allowed)


def read_payload(name: str) -> Any:
    """Decoded JSON of a file in tests/data."""
    return json.loads((DATA / name).read_text(encoding="utf-8"))
