"""The declared RBAC rules are exactly what the Kubernetes executors really call.

Every executor (preview, execution, and its rehearsal as `build_rehearsal_executors`
builds it) runs over real HTTP against the fake API server; the calls it made
are read back from the fake's request log and turned into RBAC terms (verb, API
group, resource) from the URL alone, as the API server's authorizer does. An
undeclared call would be a 403 in a cluster given only the generated Role; a
declared verb nothing uses would be a permission granted for nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from bot.actions.base import ExecutionContext, Executor
from bot.actions.catalog import (
    PatchConfigMap,
    RolloutRestart,
    RolloutUndo,
    RunJob,
    ScaleDeployment,
)
from bot.actions.kubernetes import (
    ConfigMapPatchExecutor,
    RolloutRestartExecutor,
    RolloutUndoExecutor,
    ScaleExecutor,
)
from bot.actions.kubernetes_jobs import RunJobExecutor
from bot.actions.permissions import (
    KUBE_RULES,
    NON_KUBE_NEEDS,
    KubeRule,
    markdown_table,
    rules_for_namespaces,
)
from bot.actions.registry import REGISTRY, ActionParams
from bot.actions.rehearsal import build_rehearsal_executors
from bot.settings import AllowedTargets, Settings
from tests.fakes.kubernetes import FakeKubernetes, FakeRequest

NS, APP = "ai", "frenly-ai"  # as seeded by the kube fixture (conftest.py)
CM = "ssot-config"  # ditto
JOB_NS, CJ = "nexus", "ssot-sync"
IMAGE = "registry.example/frenly-ai"


@dataclass(frozen=True)
class Call:
    """One request, as RBAC authorizes it."""

    verb: str
    group: str
    resource: str
    namespace: str
    name: str  # "" for a collection (list, create)


def as_rbac(request: FakeRequest) -> Call:
    """The authorizer's view of a request, from its method and path only.

    Parsed here from the URL layout Kubernetes documents, not with the fake's
    own routing table: a route the fake got wrong must not hide a wrong rule.
    """
    parts = request.path.strip("/").split("/")
    if parts[0] == "api":  # /api/v1/namespaces/... : the core group
        group, rest = "", parts[2:]
    elif parts[0] == "apis":  # /apis/<group>/<version>/namespaces/...
        group, rest = parts[1], parts[3:]
    else:
        raise AssertionError(f"not a resource path: {request.path}")
    assert rest[0] == "namespaces", f"a cluster-wide call needs a ClusterRole: {request.path}"
    namespace, resource, *tail = rest[1:]
    name = tail[0] if tail else ""
    if len(tail) > 1:  # a subresource: deployments/scale, pods/log
        resource = f"{resource}/{tail[1]}"
    verbs = {"GET": "get" if name else "list", "PATCH": "patch", "POST": "create"}
    assert request.method in verbs, f"unexpected {request.method} {request.path}"
    return Call(verbs[request.method], group, resource, namespace, name)


def declared(action: str) -> set[tuple[str, str, str]]:
    return {(verb, r.api_group, r.resource) for r in KUBE_RULES[action] for verb in r.verbs}


def used(calls: list[Call]) -> set[tuple[str, str, str]]:
    return {(c.verb, c.group, c.resource) for c in calls}


def rule_of(action: str, call: Call) -> KubeRule:
    [rule] = [
        r
        for r in KUBE_RULES[action]
        if (r.api_group, r.resource) == (call.group, call.resource) and call.verb in r.verbs
    ]
    return rule


def run(
    kube: FakeKubernetes,
    executor: Executor,
    params: ActionParams,
    context: ExecutionContext,
) -> list[Call]:
    """Preview, then execute the previewed step; the calls both made, in RBAC terms."""
    start = len(kube.requests)
    executor.execute(params, executor.preview(params).snapshot, context)
    requests = kube.requests[start:]
    # Every call was answered (409: a Job another approval created, which is followed):
    # a 403 or 404 would end the run early and leave later calls unseen.
    assert all(r.status in (200, 201, 409) for r in requests), [
        (r.method, r.path, r.status) for r in requests
    ]
    return [as_rbac(r) for r in requests]


def assert_exact(action: str, calls: list[Call], target: tuple[str, str]) -> None:
    assert used(calls) == declared(action), (
        f"{action}: undeclared {sorted(used(calls) - declared(action))}, "
        f"declared but unused {sorted(declared(action) - used(calls))}"
    )
    namespace, name = target
    # One Role in the target's namespace covers the action.
    assert {c.namespace for c in calls} == {namespace}
    # resourceNames from the allow-list hold: a call under a name-restricted rule
    # only ever names the target itself.
    for call in calls:
        if rule_of(action, call).names_from is not None:
            assert call.name == name, f"{action}: {call} is not on the allow-listed {name}"


# -- the worlds the executors run in -------------------------------------------------------


@pytest.fixture
def rehearsals(clean_env: None, kubeconfig: Path, tmp_path: Path) -> dict[str, Executor]:
    """The rehearsal executors exactly as the bot builds them from its settings."""
    settings = Settings(kubeconfig=str(kubeconfig), nexus_workdir=tmp_path / "work")
    return build_rehearsal_executors(settings)


@pytest.fixture
def drill(context: ExecutionContext) -> ExecutionContext:
    return dataclasses.replace(context, drill_branch="drill/42-step", request_id=42)


def with_history(kube: FakeKubernetes) -> None:
    """Revisions 1, 2, 3 of the deployment, so that there is one to roll back to."""
    kube.set_image(NS, APP, f"{IMAGE}:2.0")
    kube.set_image(NS, APP, f"{IMAGE}:3.0")


def with_cronjob(kube: FakeKubernetes) -> None:
    kube.add_cronjob(JOB_NS, CJ, image="sync:1", command=["sync"], args=["--dry-run"])
    kube.auto_finish_jobs(exit_code=0, log="synced\n")  # so execution reads a pod and its log


@pytest.fixture
def cronjob_world(kube: FakeKubernetes) -> None:
    with_cronjob(kube)


Case = tuple[
    Callable[[client.ApiClient], Executor],  # the real executor
    ActionParams,
    Callable[[FakeKubernetes], None],  # the cluster it needs
    tuple[str, str],  # its target, namespace and name
]

CASES: dict[str, Case] = {
    "k8s.scale": (
        ScaleExecutor,
        ScaleDeployment(namespace=NS, deployment=APP, replicas=1),
        lambda kube: None,
        (NS, APP),
    ),
    "k8s.rollout_restart": (
        RolloutRestartExecutor,
        RolloutRestart(namespace=NS, deployment=APP),
        lambda kube: None,
        (NS, APP),
    ),
    "k8s.rollout_undo": (
        RolloutUndoExecutor,
        RolloutUndo(namespace=NS, deployment=APP),
        with_history,
        (NS, APP),
    ),
    "k8s.configmap_patch": (
        ConfigMapPatchExecutor,
        PatchConfigMap(namespace=NS, name=CM, data={"enabled": "false"}),
        lambda kube: None,
        (NS, CM),
    ),
    "k8s.run_job": (
        # No real waiting: the fake finishes the Job as it is created.
        lambda api: RunJobExecutor(api, poll_seconds=0.01, sleep=lambda _: None),
        RunJob(namespace=JOB_NS, cronjob=CJ, args=["--force"]),
        with_cronjob,
        (JOB_NS, CJ),
    ),
}


def test_every_kubernetes_action_is_covered() -> None:
    k8s = {name for name in REGISTRY.names() if name.startswith("k8s.")}
    assert set(KUBE_RULES) == k8s == set(CASES)
    assert set(NON_KUBE_NEEDS) == set(REGISTRY.names()) - k8s


@pytest.mark.parametrize("action", sorted(CASES))
def test_the_executor_uses_exactly_the_declared_rules(
    action: str,
    kube: FakeKubernetes,
    api_client: client.ApiClient,
    context: ExecutionContext,
    rehearsals: dict[str, Executor],
    drill: ExecutionContext,
) -> None:
    build, params, prepare, target = CASES[action]
    prepare(kube)
    real = build(api_client)
    assert real.action == action

    # The rehearsal first: the real execution would leave it nothing to change.
    rehearsed = run(kube, rehearsals[action], params, drill)
    calls = run(kube, real, params, dataclasses.replace(context, request_id=42))

    assert_exact(action, calls, target)
    if action == "k8s.run_job":
        # Never waits for its dry-run Job: the CronJob read and the create, nothing else.
        assert used(rehearsed) == {("get", "batch", "cronjobs"), ("create", "batch", "jobs")}
        assert_exact(action, calls + rehearsed, target)
    else:
        # The real code over dry-run writes: the same calls, so the same Role.
        assert_exact(action, rehearsed, target)


@pytest.mark.usefixtures("cronjob_world")
def test_run_job_following_another_approvals_job_needs_nothing_more(
    kube: FakeKubernetes, api_client: client.ApiClient, context: ExecutionContext
) -> None:
    # Two replicas executing one approval: the second's create gets 409 and it
    # reads the existing Job to check it is this request's (get jobs, declared).
    request = dataclasses.replace(context, request_id=7)
    params = CASES["k8s.run_job"][1]
    first = RunJobExecutor(api_client, poll_seconds=0.01, sleep=lambda _: None)
    snapshot = first.preview(params).snapshot
    first.execute(params, snapshot, request)

    calls = run(kube, first, params, request)

    assert [r.status for r in kube.creates(dry_run=False)] == [201, 409]
    assert_exact("k8s.run_job", calls, (JOB_NS, CJ))


# -- the Roles generated from the allow-list -----------------------------------------------


def test_rules_for_the_shipped_allow_list(shipped_allowed: AllowedTargets) -> None:
    cronjobs = sorted(
        entry.split("/", 1)[1] for entry in shipped_allowed.cronjobs if entry.startswith("nexus/")
    )
    assert len(cronjobs) == 5

    assert rules_for_namespaces(shipped_allowed) == {
        "ai": [
            {
                "apiGroups": ["apps"],
                "resources": ["deployments"],
                "verbs": ["get", "patch"],
                "resourceNames": ["frenly-ai"],
            },
            {
                "apiGroups": ["apps"],
                "resources": ["deployments/scale"],
                "verbs": ["get", "patch"],
                "resourceNames": ["frenly-ai"],
            },
            # A list cannot be restricted by name.
            {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list"]},
        ],
        "nexus": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "verbs": ["get", "patch"],
                "resourceNames": ["ssot-config"],
            },
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
            {
                "apiGroups": ["batch"],
                "resources": ["cronjobs"],
                "verbs": ["get"],
                "resourceNames": cronjobs,
            },
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "create"]},
        ],
    }


def test_rules_merge_actions_and_skip_namespaces_without_targets() -> None:
    allowed = AllowedTargets(
        deployments=["shop/web", "shop/api"],
        configmaps=["shop/flags"],
        repositories=["acme/ssot"],
    )

    rules = rules_for_namespaces(allowed)

    # One namespace: nothing for cronjobs, so no jobs, pods or logs anywhere.
    assert list(rules) == ["shop"]
    deployments = [r for r in rules["shop"] if r["resources"] == ["deployments"]]
    # restart and undo both need get+patch on the same deployments: one rule.
    assert deployments == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "verbs": ["get", "patch"],
            "resourceNames": ["api", "web"],
        }
    ]
    assert not any(r["resources"][0] in ("jobs", "pods", "pods/log") for r in rules["shop"])
    assert rules_for_namespaces(AllowedTargets()) == {}


def test_markdown_table_lists_every_rule_and_need() -> None:
    table = markdown_table()

    assert table.startswith("| action | API group | resource | verbs | restricted to |\n")
    for action, rules in KUBE_RULES.items():
        for rule in rules:
            row = next(
                line
                for line in table.splitlines()
                if line.startswith(f"| `{action}` |") and f"| `{rule.resource}` |" in line
            )
            assert ", ".join(rule.verbs) in row
    for action in NON_KUBE_NEEDS:
        assert f"| `{action}` |" in table
