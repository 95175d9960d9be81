"""The catalog of actions: strict parameter validation, targets, and the one-line descriptions.

Values reach git and the Kubernetes API and may come from alert labels, so
hostile values must be refused by the params model itself.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

import bot.actions.catalog  # noqa: F401  (registers the actions)
from bot.actions.registry import (
    REGISTRY,
    ActionParams,
    Target,
    TargetKind,
    UnknownAction,
)

ALL_ACTIONS = [
    "git.restore_archive",
    "git.restore_path",
    "git.revert",
    "github.close_pr",
    "k8s.configmap_patch",
    "k8s.rollout_restart",
    "k8s.rollout_undo",
    "k8s.run_job",
    "k8s.scale",
    "s3.restore_snapshot",
]

GOOD: dict[str, dict[str, Any]] = {
    "git.revert": {"repo": "nexus/ssot", "commit": "9fceb02"},
    "git.restore_path": {"repo": "nexus/ssot", "commit": "HEAD~1"},
    "github.close_pr": {"repo": "nexus/ssot", "pr": 318},
    "k8s.scale": {"namespace": "ai", "deployment": "frenly-ai", "replicas": 0},
    "k8s.rollout_restart": {"namespace": "nexus", "deployment": "orders-api"},
    "k8s.rollout_undo": {"namespace": "nexus", "deployment": "orders-api"},
    "k8s.configmap_patch": {"namespace": "nexus", "name": "ssot-config", "data": {"enabled": "0"}},
    "k8s.run_job": {"namespace": "nexus", "cronjob": "ssot-sync", "args": ["--force"]},
    "git.restore_archive": {"repo": "nexus/ssot"},
    "s3.restore_snapshot": {"repo": "nexus/ssot", "bucket": "nexus-ssot-snapshots"},
}


def params(action: str, **values: Any) -> ActionParams:
    return REGISTRY.get(action).params.model_validate({**GOOD[action], **values})


def test_registry_names() -> None:
    assert REGISTRY.names() == ALL_ACTIONS
    assert "k8s.scale" in REGISTRY
    assert "k8s.delete_namespace" not in REGISTRY
    with pytest.raises(UnknownAction):
        REGISTRY.get("k8s.delete_namespace")


def test_only_scale_and_configmap_patch_are_reversible() -> None:
    reversible = {name for name in REGISTRY.names() if REGISTRY.get(name).reversible}
    assert reversible == {"k8s.scale", "k8s.configmap_patch"}


@pytest.mark.parametrize(
    ("action", "values", "description"),
    [
        ("git.revert", {}, "git revert 9fceb02 on nexus/ssot@main, then push it"),
        (
            "git.revert",
            {"mode": "pull_request", "branch": "release/1.4", "commit": "HEAD~2"},
            "git revert HEAD~2 on nexus/ssot@release/1.4, then open a revert pull request",
        ),
        (
            "git.restore_path",
            {},
            'git checkout HEAD~1 -- ssot_plan/ on nexus/ssot@main, commit "Restore SSOT from '
            'git history", then push',
        ),
        (
            "github.close_pr",
            {},
            'close nexus/ssot#318 with the comment "Rejected: Dangerous change detected"',
        ),
        (
            "github.close_pr",
            {"pr": "7", "comment": "no"},
            'close nexus/ssot#7 with the comment "no"',
        ),
        ("k8s.scale", {}, "scale deployment ai/frenly-ai to 0 replicas"),
        ("k8s.rollout_restart", {}, "rollout restart deployment nexus/orders-api"),
        (
            "k8s.rollout_undo",
            {},
            "rollout undo deployment nexus/orders-api to the previous revision",
        ),
        (
            "k8s.rollout_undo",
            {"to_revision": 3},
            "rollout undo deployment nexus/orders-api to revision 3",
        ),
        (
            "k8s.configmap_patch",
            {"data": {"z": "1", "enabled": "false"}},
            "patch ConfigMap nexus/ssot-config: enabled=false, z=1",
        ),
    ],
)
def test_describe(action: str, values: dict[str, Any], description: str) -> None:
    assert params(action, **values).describe() == description


@pytest.mark.parametrize(
    ("action", "target"),
    [
        ("git.revert", Target(TargetKind.REPOSITORY, "nexus/ssot")),
        ("git.restore_path", Target(TargetKind.REPOSITORY, "nexus/ssot")),
        ("github.close_pr", Target(TargetKind.REPOSITORY, "nexus/ssot")),
        ("k8s.scale", Target(TargetKind.DEPLOYMENT, "ai/frenly-ai")),
        ("k8s.rollout_restart", Target(TargetKind.DEPLOYMENT, "nexus/orders-api")),
        ("k8s.rollout_undo", Target(TargetKind.DEPLOYMENT, "nexus/orders-api")),
        ("k8s.configmap_patch", Target(TargetKind.CONFIGMAP, "nexus/ssot-config")),
    ],
)
def test_targets(action: str, target: Target) -> None:
    assert params(action).target() == target


def test_every_action_has_a_good_example() -> None:
    assert sorted(GOOD) == ALL_ACTIONS


@pytest.mark.parametrize(
    "good",
    [
        {"commit": "9fceb02"},
        {"commit": "9FCEB02D0AE598E95DC970B74767F19372D61AF8"},
        {"commit": "HEAD"},
        {"commit": "HEAD~1"},
        {"commit": "HEAD^"},
        {"commit": "9fceb02~12"},
        {"branch": "main"},
        {"branch": "release/1.4"},
        {"branch": "feature/ssot_anchors-v2"},
        {"repo": "nexus-org/ssot.config"},
        {"repo": "_x/y"},
        {"mode": "pull_request"},
    ],
)
def test_good_git_values(good: dict[str, str]) -> None:
    params("git.revert", **good)


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"commit": "--upload-pack=evil"}, "a commit SHA"),
        ({"commit": "-1"}, "a commit SHA"),
        ({"commit": "9fceb0"}, "a commit SHA"),  # too short
        ({"commit": "a" * 41}, "a commit SHA"),
        ({"commit": "9fceb02 ; rm -rf /"}, "a commit SHA"),
        ({"commit": "9fceb02\n"}, "a commit SHA"),
        ({"commit": "main"}, "a commit SHA"),
        ({"commit": "HEAD~1000"}, "a commit SHA"),
        ({"commit": "HEAD@{1}"}, "a commit SHA"),
        ({"branch": "-f"}, "a branch name"),
        ({"branch": "--force"}, "a branch name"),
        ({"branch": "a..b"}, "a branch name"),
        ({"branch": "a//b"}, "a branch name"),
        ({"branch": "main.lock"}, "a branch name"),
        ({"branch": "main/"}, "a branch name"),
        ({"branch": "main."}, "a branch name"),
        ({"branch": "ma in"}, "a branch name"),
        ({"branch": "@{-1}"}, "a branch name"),
        ({"branch": "x" * 201}, "a branch name"),
        ({"branch": ""}, "a branch name"),
        ({"repo": "ssot"}, "owner/name"),
        ({"repo": "a/b/c"}, "owner/name"),
        ({"repo": "../etc"}, "owner/name"),
        ({"repo": "-x/ssot"}, "owner/name"),
        ({"repo": "nexus/ssot\n"}, "owner/name"),
        ({"mode": "force-push"}, "String should match pattern"),
        ({"commit": 1234567}, "valid string"),
        ({"unknown": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_hostile_git_values_are_refused(bad: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        params("git.revert", **bad)
    assert expected in str(caught.value)


@pytest.mark.parametrize("path", ["ssot_plan/", "ssot_plan/anchors.yaml", "a/..b/c", ".github"])
def test_good_restore_paths(path: str) -> None:
    restore = params("git.restore_path", path=path)
    assert restore.describe().startswith(f"git checkout HEAD~1 -- {path} ")


@pytest.mark.parametrize(
    "path", ["../secrets", "a/../../b", "..", "ssot_plan/..", "/etc/passwd", "-rf", "a b", ""]
)
def test_hostile_restore_paths_are_refused(path: str) -> None:
    with pytest.raises(ValidationError, match="a relative path inside the repository"):
        params("git.restore_path", path=path)


@pytest.mark.parametrize("message", ["", "x" * 201])
def test_restore_commit_message_length(message: str) -> None:
    with pytest.raises(ValidationError, match="message"):
        params("git.restore_path", message=message)


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"pr": "abc"}, "valid integer"),
        ({"pr": 0}, "greater than or equal to 1"),
        ({"pr": "1.5"}, "valid integer"),
        ({"comment": ""}, "at least 1 character"),
        ({"comment": "x" * 2001}, "at most 2000 characters"),
        ({"repo": "nexus"}, "owner/name"),
    ],
)
def test_hostile_close_pr_values_are_refused(bad: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        params("github.close_pr", **bad)
    assert expected in str(caught.value)


def test_pr_number_from_a_label_string_is_accepted() -> None:
    closed = params("github.close_pr", pr="318")
    assert closed.model_dump()["pr"] == 318


@pytest.mark.parametrize(
    ("action", "bad", "expected"),
    [
        ("k8s.scale", {"replicas": -1}, "greater than or equal to 0"),
        ("k8s.scale", {"replicas": 1001}, "less than or equal to 1000"),
        ("k8s.scale", {"replicas": "many"}, "valid integer"),
        ("k8s.scale", {"deployment": "Frenly-AI"}, "a Kubernetes name"),
        ("k8s.scale", {"deployment": "-x"}, "a Kubernetes name"),
        ("k8s.scale", {"deployment": "x" * 254}, "a Kubernetes name"),
        ("k8s.scale", {"deployment": "a/b"}, "a Kubernetes name"),
        ("k8s.scale", {"namespace": "a.b"}, "a Kubernetes namespace"),
        ("k8s.scale", {"namespace": "x" * 64}, "a Kubernetes namespace"),
        ("k8s.scale", {"namespace": ""}, "a Kubernetes namespace"),
        ("k8s.rollout_restart", {"deployment": "x;y"}, "a Kubernetes name"),
        ("k8s.rollout_undo", {"to_revision": 0}, "greater than or equal to 1"),
        ("k8s.configmap_patch", {"data": {}}, "at least 1 item"),
        ("k8s.configmap_patch", {"data": {"bad key": "x"}}, "'bad key' is not a valid ConfigMap"),
        ("k8s.configmap_patch", {"data": {"../x": "x"}}, "not a valid ConfigMap key"),
        (
            "k8s.configmap_patch",
            {"data": {f"k{i}": "v" for i in range(33)}},
            "at most 32 items",
        ),
        ("k8s.configmap_patch", {"data": {"a": 1}}, "valid string"),
        ("k8s.configmap_patch", {"name": "Ssot"}, "a Kubernetes name"),
    ],
)
def test_hostile_kubernetes_values_are_refused(
    action: str, bad: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        params(action, **bad)
    assert expected in str(caught.value)


def test_long_hostile_values_are_clipped_in_the_error() -> None:
    with pytest.raises(ValidationError) as caught:
        params("git.revert", commit="-" + "x" * 5000)
    assert "x" * 100 not in str(caught.value).split("[type=")[0]


def test_params_are_frozen() -> None:
    scale = params("k8s.scale")
    with pytest.raises(ValidationError):
        scale.replicas = 5  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "arg",
    [
        "--force; rm -rf /",
        "$(curl evil)",
        "`id`",
        "a\nb",
        "x && y",
        "a|b",
        "--anchor=$HOME",
        "ok\x00",
        "",
        "x" * 201,
    ],
)
def test_run_job_refuses_shell_syntax_in_args(arg: str) -> None:
    with pytest.raises(ValidationError):
        params("k8s.run_job", args=[arg])


def test_run_job_args_follow_the_steps_pattern() -> None:
    assert params("k8s.run_job", args=["--anchor", "a-12"]).args == ["--anchor", "a-12"]
    strict = r"--force|--anchor|[a-z0-9][a-z0-9-]{0,40}"
    assert params("k8s.run_job", args=["--anchor", "a-12"], arg_pattern=strict)
    with pytest.raises(ValidationError, match="does not match"):
        params("k8s.run_job", args=["--other"], arg_pattern=strict)
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        params("k8s.run_job", arg_pattern="(")


def test_snapshot_restore_touches_the_repository_and_the_bucket() -> None:
    restore = params("s3.restore_snapshot", snapshot="2026-11-29T10-00-00Z", prefix="ssot/")
    assert [str(t) for t in restore.targets()] == [
        "repository nexus/ssot",
        "bucket nexus-ssot-snapshots",
    ]
    for bad in (
        {"prefix": "/abs/"},
        {"prefix": "no-slash"},
        {"snapshot": "../x"},
        {"bucket": "UP"},
    ):
        with pytest.raises(ValidationError):
            params("s3.restore_snapshot", **bad)
