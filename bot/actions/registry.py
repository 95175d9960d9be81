"""The action registry: every remediation the bot can run, with its typed parameters.

An action is registered once with a pydantic params model. Playbook YAML that
names an unknown action, an unknown or missing parameter, or a value of the
wrong type is rejected by `nexus-bot validate`, not at 3 a.m.

Each params model also says which target it touches, so the allow-list in
config can refuse anything else: alert labels come from outside.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from bot.settings import AllowedTargets


class TargetKind(StrEnum):
    REPOSITORY = "repository"
    DEPLOYMENT = "deployment"
    CONFIGMAP = "configmap"
    CRONJOB = "cronjob"
    BUCKET = "bucket"


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    name: str  # owner/repo, or namespace/name

    def __str__(self) -> str:
        return f"{self.kind.value} {self.name}"


class ActionParams(BaseModel):
    """Base of every action's parameters: strict, frozen, no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    def target(self) -> Target:
        """What this action touches, checked against the allow-list."""
        raise NotImplementedError

    def targets(self) -> list[Target]:
        """Everything it touches (a restore reads a bucket and writes a repository)."""
        return [self.target()]

    def describe(self) -> str:
        """One line saying exactly what will happen, for buttons and approval cards."""
        raise NotImplementedError


@dataclass(frozen=True)
class ActionSpec:
    name: str
    title: str
    params: type[ActionParams]
    reversible: bool = False


class UnknownAction(KeyError):
    pass


class ActionRegistry:
    def __init__(self) -> None:
        self._specs: dict[str, ActionSpec] = {}

    def register(self, spec: ActionSpec) -> ActionSpec:
        if spec.name in self._specs:
            raise ValueError(f"action {spec.name!r} registered twice")
        self._specs[spec.name] = spec
        return spec

    def get(self, name: str) -> ActionSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownAction(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def names(self) -> list[str]:
        return sorted(self._specs)


REGISTRY = ActionRegistry()


def action(
    name: str, title: str, reversible: bool = False
) -> Callable[[type[ActionParams]], type[ActionParams]]:
    """Class decorator: register a params model as the action `name`.

    Usage::

        @action("k8s.scale", "Scale a deployment")
        class ScaleParams(ActionParams):
            namespace: KubeName
            ...
    """

    def register(params: type[ActionParams]) -> type[ActionParams]:
        REGISTRY.register(ActionSpec(name, title, params, reversible))
        return params

    return register


def refusal_for(target: Target, allowed: AllowedTargets) -> str | None:
    """None when the target is allow-listed, else the reason it is refused."""
    allowed_names: dict[TargetKind, tuple[list[str], str]] = {
        TargetKind.REPOSITORY: (allowed.repositories, "allowed_targets.repositories"),
        TargetKind.DEPLOYMENT: (allowed.deployments, "allowed_targets.deployments"),
        TargetKind.CONFIGMAP: (allowed.configmaps, "allowed_targets.configmaps"),
        TargetKind.CRONJOB: (allowed.cronjobs, "allowed_targets.cronjobs"),
        TargetKind.BUCKET: (allowed.buckets, "allowed_targets.buckets"),
    }
    names, key = allowed_names[target.kind]
    if target.name in names:
        return None
    return f"{target} is not allow-listed ({key} in the config)"


def refusal_for_params(params: ActionParams, allowed: AllowedTargets) -> str | None:
    """None when every target of the action is allow-listed, else the first refusal."""
    for target in params.targets():
        refusal = refusal_for(target, allowed)
        if refusal:
            return refusal
    return None
