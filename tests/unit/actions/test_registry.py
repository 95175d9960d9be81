"""The action registry: registration and the allow-list of targets (`refusal_for`)."""

from __future__ import annotations

import pytest

from bot.actions.registry import (
    ActionParams,
    ActionRegistry,
    ActionSpec,
    Target,
    TargetKind,
    refusal_for,
)
from bot.settings import AllowedTargets


def test_registering_twice_is_an_error() -> None:
    registry = ActionRegistry()
    spec = ActionSpec("x.y", "X", ActionParams)
    registry.register(spec)
    with pytest.raises(ValueError, match=r"action 'x\.y' registered twice"):
        registry.register(spec)


def test_refusal_for(shipped_allowed: AllowedTargets) -> None:
    assert refusal_for(Target(TargetKind.REPOSITORY, "nexus/ssot"), shipped_allowed) is None
    assert refusal_for(Target(TargetKind.DEPLOYMENT, "ai/frenly-ai"), shipped_allowed) is None
    assert refusal_for(Target(TargetKind.CONFIGMAP, "nexus/ssot-config"), shipped_allowed) is None
    assert refusal_for(Target(TargetKind.REPOSITORY, "attacker/ssot"), shipped_allowed) == (
        "repository attacker/ssot is not allow-listed (allowed_targets.repositories in the config)"
    )
    assert refusal_for(Target(TargetKind.DEPLOYMENT, "ai/evil"), shipped_allowed) == (
        "deployment ai/evil is not allow-listed (allowed_targets.deployments in the config)"
    )
    assert refusal_for(Target(TargetKind.CONFIGMAP, "nexus/other"), shipped_allowed) == (
        "configmap nexus/other is not allow-listed (allowed_targets.configmaps in the config)"
    )


def test_allow_list_kinds_do_not_mix() -> None:
    allowed = AllowedTargets(deployments=["nexus/ssot-config"])
    assert refusal_for(Target(TargetKind.CONFIGMAP, "nexus/ssot-config"), allowed) is not None
    assert refusal_for(Target(TargetKind.DEPLOYMENT, "nexus/ssot-config"), allowed) is None


def test_shipped_allow_list(shipped_allowed: AllowedTargets) -> None:
    assert shipped_allowed.repositories == ["nexus/ssot"]
    assert shipped_allowed.deployments == ["ai/frenly-ai"]
    assert shipped_allowed.configmaps == ["nexus/ssot-config"]
