"""The remediations the source playbook names, as typed, registered actions.

Values are validated strictly: they reach `git` and the Kubernetes API, and
they may come from alert labels. Git runs with argument lists, but a SHA that
is not hex or a branch that starts with `-` is refused here already.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

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
# An S3 bucket name (lower-case letters, digits, dots, dashes; 3-63).
Bucket = Annotated[
    str, _pattern(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "an S3 bucket name (lower case)", 63)
]
# A key prefix under which snapshots sit: empty or ending in "/".
KeyPrefix = Annotated[
    str,
    _pattern(r"(?:(?![/.])[A-Za-z0-9._-]+/)*", "an S3 key prefix ending in / (or empty)", 200),
]
# A snapshot's name under the prefix: `latest` or a dated one like 2026-11-29T10-00-00Z.
SnapshotName = Annotated[
    str, _pattern(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}", "a snapshot name like latest", 100)
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


class _RestoreParams(_GitParams):
    path: RepoPath = "ssot_plan/"
    # push: straight to the branch (a refused push falls back to a pull request);
    # pull_request: always a pull request.
    mode: str = Field("push", pattern=r"^(push|pull_request)$")


@action("git.restore_archive", "Restore from the archive")
class RestoreArchive(_RestoreParams):
    archive: RepoPath = "archive/ssot_backup/"
    message: str = Field("Restore SSOT from archive", min_length=1, max_length=200)

    def describe(self) -> str:
        return (
            f"copy {self.archive} over {self.path} on {self.repo}@{self.branch}, "
            f'commit "{self.message}", then {_how(self.mode)}'
        )


@action("s3.restore_snapshot", "Restore from an external snapshot")
class RestoreSnapshot(_RestoreParams):
    bucket: Bucket
    prefix: KeyPrefix = ""
    snapshot: SnapshotName = "latest"
    message: str = Field("Restore SSOT from external snapshot", min_length=1, max_length=200)

    def targets(self) -> list[Target]:
        return [self.target(), Target(TargetKind.BUCKET, self.bucket)]

    def describe(self) -> str:
        source = f"s3://{self.bucket}/{self.prefix}{self.snapshot}/{self.path}"
        return (
            f"restore {self.path} on {self.repo}@{self.branch} from {source} (checksums "
            f'verified), commit "{self.message} <key>", then {_how(self.mode)}'
        )


def _how(mode: str) -> str:
    return "push it" if mode == "push" else "open a pull request"


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


# No shell ever sees these (the container gets them as its argv), but a value
# with shell syntax in it is refused all the same: it is never what a playbook
# meant, and a script might hand it to a shell.
_SHELL_SYNTAX = re.compile(r"[\s;&|`$<>(){}\[\]\\'\"*?!~#%^]")
DEFAULT_ARG_PATTERN = r"[A-Za-z0-9._/=:@,+-]{1,200}"


@action("k8s.run_job", "Run a Job from a CronJob")
class RunJob(ActionParams):
    """`kubectl create job --from=cronjob/NAME`, optionally with the container's args set."""

    namespace: Namespace
    cronjob: KubeName
    # Replaces the container's `args` (its command stays the CronJob's).
    args: list[str] | None = Field(None, max_length=32)
    # Each argument must match this (Python `re`, whole string); set per step.
    arg_pattern: str = Field(DEFAULT_ARG_PATTERN, min_length=1, max_length=300)
    container: KubeName | None = None  # which container's args; default: the first
    timeout_seconds: int = Field(600, ge=10, le=3600)

    @field_validator("arg_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"arg_pattern is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _args(self) -> RunJob:
        pattern = re.compile(self.arg_pattern)
        for index, arg in enumerate(self.args or []):
            shown = arg[:60].encode("unicode_escape").decode()
            if _SHELL_SYNTAX.search(arg) or not arg.isprintable():
                raise ValueError(
                    f"args[{index}] {shown!r} contains shell syntax or control characters"
                )
            if not pattern.fullmatch(arg):
                raise ValueError(f"args[{index}] {shown!r} does not match {self.arg_pattern!r}")
        return self

    def target(self) -> Target:
        return Target(TargetKind.CRONJOB, f"{self.namespace}/{self.cronjob}")

    def describe(self) -> str:
        with_args = f" with args {' '.join(self.args)}" if self.args is not None else ""
        return f"run a Job from CronJob {self.namespace}/{self.cronjob}{with_args}"


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
