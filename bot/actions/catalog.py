"""The remediations the source playbook names, as typed, registered actions.

Values are validated strictly: they reach `git` and the Kubernetes API, and
they may come from alert labels. Git runs with argument lists, but a SHA that
is not hex or a branch that starts with `-` is refused here already.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from bot.actions.registry import ActionParams, Target, TargetKind, action


def _pattern(regex: str, expected: str, max_length: int = 253) -> AfterValidator:
    """A str check with Python's `re` (pydantic's Rust regex has no look-around)."""
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if len(value) > max_length or not compiled.fullmatch(value):
            raise ValueError(f"expected {expected}, got {value[:80]!r}")
        return value

    return AfterValidator(check)


Repository = Annotated[
    str,
    _pattern(r"[A-Za-z0-9_][A-Za-z0-9_.-]*/[A-Za-z0-9_][A-Za-z0-9_.-]*", "owner/name", 200),
]
Revision = Annotated[
    str,
    _pattern(
        r"(?:[0-9a-fA-F]{7,40}|HEAD)(?:~[0-9]{1,3}|\^)?",
        "a commit SHA (7-40 hex digits), optionally with ~N, or HEAD~N",
    ),
]
# git check-ref-format, narrowed: no leading dash, no `..`, `@{`, `//`, no `.lock` end.
Branch = Annotated[
    str,
    _pattern(
        r"(?!-)(?!.*\.\.)(?!.*@\{)(?!.*//)[A-Za-z0-9._/-]+(?<!\.lock)(?<![/.])",
        "a branch name (letters, digits, . _ / -; not starting with -)",
        200,
    ),
]
KubeName = Annotated[
    str, _pattern(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", "a Kubernetes name (lower-case DNS name)")
]
Namespace = Annotated[
    str, _pattern(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", "a Kubernetes namespace (DNS label)", 63)
]
RepoPath = Annotated[
    str,
    _pattern(
        r"(?![-/])(?!.*(?:^|/)\.\.(?:/|$))[A-Za-z0-9._/-]+",
        "a relative path inside the repository, without ..",
        400,
    ),
]


class _GitParams(ActionParams):
    repo: Repository
    branch: Branch = "main"

    def target(self) -> Target:
        return Target(TargetKind.REPOSITORY, self.repo)


@action("git.revert", "Revert a commit")
class RevertCommit(_GitParams):
    commit: Revision
    # push: straight to the branch, as the source playbook does; pull_request: a revert PR.
    mode: str = Field("push", pattern=r"^(push|pull_request)$")

    def describe(self) -> str:
        how = "push it" if self.mode == "push" else "open a revert pull request"
        return f"git revert {self.commit} on {self.repo}@{self.branch}, then {how}"


@action("git.restore_path", "Restore a path from git history")
class RestorePath(_GitParams):
    commit: Revision
    path: RepoPath = "ssot_plan/"
    message: str = Field("Restore SSOT from git history", min_length=1, max_length=200)

    def describe(self) -> str:
        return (
            f"git checkout {self.commit} -- {self.path} on {self.repo}@{self.branch}, "
            f'commit "{self.message}", then push'
        )


@action("github.close_pr", "Close a pull request")
class ClosePullRequest(ActionParams):
    repo: Repository
    pr: int = Field(ge=1)
    comment: str = Field("Rejected: Dangerous change detected", min_length=1, max_length=2000)

    def target(self) -> Target:
        return Target(TargetKind.REPOSITORY, self.repo)

    def describe(self) -> str:
        return f'close {self.repo}#{self.pr} with the comment "{self.comment}"'


class _DeploymentParams(ActionParams):
    namespace: Namespace
    deployment: KubeName

    def target(self) -> Target:
        return Target(TargetKind.DEPLOYMENT, f"{self.namespace}/{self.deployment}")


@action("k8s.scale", "Scale a deployment", reversible=True)
class ScaleDeployment(_DeploymentParams):
    replicas: int = Field(ge=0, le=1000)

    def describe(self) -> str:
        return f"scale deployment {self.namespace}/{self.deployment} to {self.replicas} replicas"


@action("k8s.rollout_restart", "Restart a deployment")
class RolloutRestart(_DeploymentParams):
    def describe(self) -> str:
        return f"rollout restart deployment {self.namespace}/{self.deployment}"


@action("k8s.rollout_undo", "Roll a deployment back")
class RolloutUndo(_DeploymentParams):
    to_revision: int | None = Field(None, ge=1)

    def describe(self) -> str:
        revision = f"revision {self.to_revision}" if self.to_revision else "the previous revision"
        return f"rollout undo deployment {self.namespace}/{self.deployment} to {revision}"


@action("k8s.configmap_patch", "Patch a ConfigMap", reversible=True)
class PatchConfigMap(ActionParams):
    namespace: Namespace
    name: KubeName
    data: dict[str, str] = Field(min_length=1, max_length=32)

    @field_validator("data")
    @classmethod
    def _keys(cls, data: dict[str, str]) -> dict[str, str]:
        for key in data:
            if not re.fullmatch(r"[-._a-zA-Z0-9]{1,253}", key):
                raise ValueError(f"{key!r} is not a valid ConfigMap key")
        return data

    def target(self) -> Target:
        return Target(TargetKind.CONFIGMAP, f"{self.namespace}/{self.name}")

    def describe(self) -> str:
        pairs = ", ".join(f"{k}={v}" for k, v in sorted(self.data.items()))
        return f"patch ConfigMap {self.namespace}/{self.name}: {pairs}"
