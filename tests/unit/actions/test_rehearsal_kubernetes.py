"""Rehearsed k8s.* actions: the real checks over the real client, every write a dry run."""

from __future__ import annotations

import pytest
from kubernetes import client

from bot.actions.base import ActionError, ExecutionContext, Executor, TargetChanged
from bot.actions.catalog import (
    PatchConfigMap,
    RolloutRestart,
    RolloutUndo,
    RunJob,
    ScaleDeployment,
)
from bot.actions.kubernetes import RESTARTED_AT, ScaleExecutor
from bot.actions.kubernetes_client import KubeApi
from bot.actions.kubernetes_job_spec import job_name, request_key
from bot.actions.rehearsal_kubernetes import (
    DRY_RUN_CHECK,
    DryRunKubeApi,
    kube_rehearsals,
    run_job_rehearsal,
)
from tests.fakes.kubernetes import FakeKubernetes

NS, APP = "ai", "frenly-ai"  # as seeded by the kube fixture (conftest.py)
CONTEXT = ExecutionContext(
    incident_number=12,
    incident_title="Drill: dangerous AI proposals",
    requested_by="U0REQUEST",
    approved_by="U0APPROVE",
    drill_branch="drill/12-scale-to-zero",
)


def rehearsal(api_client: client.ApiClient, action: str) -> Executor:
    return {r.action: r for r in kube_rehearsals(api_client)}[action]


def assert_nothing_written(kube: FakeKubernetes) -> None:
    assert kube.patches(dry_run=False) == []
    assert kube.patches(dry_run=True), "the rehearsal should have dry-run its change"


def test_scale_rehearsal_dry_runs_and_changes_nothing(
    kube: FakeKubernetes, api_client: client.ApiClient
) -> None:
    executor = rehearsal(api_client, "k8s.scale")
    params = ScaleDeployment(namespace=NS, deployment=APP, replicas=0)
    before = kube.deployment(NS, APP)

    preview = executor.preview(params)
    assert preview.summary == f"deployment {NS}/{APP}: 3 → 0 replicas"  # the real preview
    previewed = len(kube.patches(dry_run=True))
    result = executor.execute(params, preview.snapshot, CONTEXT)

    assert_nothing_written(kube)
    assert len(kube.patches(dry_run=True)) == previewed + 1  # execution's own patch, dry run
    assert kube.deployment(NS, APP) == before  # replicas, resourceVersion, everything
    assert result.summary == (
        f"Would work (server-side dry run accepted): scale deployment {NS}/{APP} "
        "from 3 to 0 replicas"
    )
    assert result.undo is None
    assert result.data["rehearsal"] is True
    assert result.data["checks"] == ["target re-read: unchanged since the preview", DRY_RUN_CHECK]
    assert result.data["would_have"]["to_replicas"] == 0
    assert any("dryRun=All" in line for line in result.details)


def test_scale_rehearsal_refused_by_rbac_would_not_have_worked(
    kube: FakeKubernetes, api_client: client.ApiClient
) -> None:
    executor = rehearsal(api_client, "k8s.scale")
    params = ScaleDeployment(namespace=NS, deployment=APP, replicas=0)
    preview = executor.preview(params)
    kube.forbid("patch", "deployments/scale", NS)

    with pytest.raises(ActionError, match="Would not have worked") as error:
        executor.execute(params, preview.snapshot, CONTEXT)

    assert "RBAC does not let the bot patch deployments/scale in namespace ai" in str(error.value)
    assert kube.patches(dry_run=False) == []
    assert kube.deployment(NS, APP)["spec"]["replicas"] == 3


def test_scale_rehearsal_keeps_the_target_check(
    kube: FakeKubernetes, api_client: client.ApiClient
) -> None:
    executor = rehearsal(api_client, "k8s.scale")
    params = ScaleDeployment(namespace=NS, deployment=APP, replicas=0)
    preview = executor.preview(params)
    kube.update_deployment(NS, APP, lambda d: d["spec"].update(replicas=5))

    with pytest.raises(TargetChanged, match="replicas changed from 3 to 5"):
        executor.execute(params, preview.snapshot, CONTEXT)
    assert kube.patches(dry_run=False) == []


def test_scale_rehearsal_with_nothing_to_change(
    kube: FakeKubernetes, api_client: client.ApiClient
) -> None:
    executor = rehearsal(api_client, "k8s.scale")
    params = ScaleDeployment(namespace=NS, deployment=APP, replicas=3)

    result = executor.execute(params, executor.preview(params).snapshot, CONTEXT)

    assert result.summary.startswith("Would work, nothing to change")
    assert DRY_RUN_CHECK not in result.data["checks"]
    assert kube.patches(dry_run=False) == []


def test_rollout_restart_rehearsal_writes_nothing(
    kube: FakeKubernetes, api_client: client.ApiClient
) -> None:
    executor = rehearsal(api_client, "k8s.rollout_restart")
    params = RolloutRestart(namespace=NS, deployment=APP)
    before = kube.deployment(NS, APP)

    result = executor.execute(params, executor.preview(params).snapshot, CONTEXT)

    assert_nothing_written(kube)
    after = kube.deployment(NS, APP)
    assert after == before
    assert RESTARTED_AT not in (after["spec"]["template"]["metadata"].get("annotations") or {})
    assert result.summary == (
        f"Would work (server-side dry run accepted): rollout restart deployment {NS}/{APP}"
    )
    assert result.data["rehearsal"] is True and DRY_RUN_CHECK in result.data["checks"]


def test_rollout_undo_rehearsal_writes_nothing(
    kube: FakeKubernetes, api_client: client.ApiClient
) -> None:
    kube.set_image(NS, APP, "registry.example/frenly-ai:2.0")  # revision 2, running
    executor = rehearsal(api_client, "k8s.rollout_undo")
    params = RolloutUndo(namespace=NS, deployment=APP)
    before, replicasets = kube.deployment(NS, APP), kube.replicasets(NS)

    result = executor.execute(params, executor.preview(params).snapshot, CONTEXT)

    assert_nothing_written(kube)
    assert kube.deployment(NS, APP) == before
    assert kube.replicasets(NS) == replicasets
    assert result.summary == (
        f"Would work (server-side dry run accepted): roll deployment {NS}/{APP} back "
        "from revision 2 to revision 1"
    )
    assert result.data["would_have"]["to_revision"] == 1


def test_configmap_patch_rehearsal_writes_nothing(
    kube: FakeKubernetes, api_client: client.ApiClient
) -> None:
    executor = rehearsal(api_client, "k8s.configmap_patch")
    params = PatchConfigMap(namespace=NS, name="ssot-config", data={"enabled": "false"})
    before = kube.configmap(NS, "ssot-config")

    result = executor.execute(params, executor.preview(params).snapshot, CONTEXT)

    assert_nothing_written(kube)
    assert kube.configmap(NS, "ssot-config") == before
    assert result.summary == (
        "Would work (server-side dry run accepted): patch ConfigMap ai/ssot-config: "
        'enabled: "true" → "false"'
    )
    assert result.undo is None


def test_dry_run_api_cannot_write_and_real_executors_are_unaffected(
    kube: FakeKubernetes, api_client: client.ApiClient
) -> None:
    body = {"spec": {"replicas": 1}}
    # Even asked for a real write, the rehearsal's API object sends a dry run.
    DryRunKubeApi(api_client, 10).patch_scale(NS, APP, body, dry_run=False)
    assert kube.patches(dry_run=False) == []
    assert kube.deployment(NS, APP)["spec"]["replicas"] == 3

    rehearsal(api_client, "k8s.scale")  # built over the same ApiClient...
    KubeApi(api_client, 10).patch_scale(NS, APP, body)
    assert kube.deployment(NS, APP)["spec"]["replicas"] == 1  # ...a real write still writes
    real = ScaleExecutor(api_client)
    params = ScaleDeployment(namespace=NS, deployment=APP, replicas=2)
    real.execute(params, real.preview(params).snapshot, CONTEXT)
    assert kube.deployment(NS, APP)["spec"]["replicas"] == 2


def test_run_job_rehearsal_only_dry_runs_the_create_and_never_waits(
    kube: FakeKubernetes, api_client: client.ApiClient
) -> None:
    kube.add_cronjob("nexus", "ssot-sync", image="sync:1", command=["sync"], args=["--dry-run"])
    kube.auto_finish_jobs()  # were a Job really created, it would finish at once
    executor = run_job_rehearsal(api_client)
    params = RunJob(namespace="nexus", cronjob="ssot-sync", args=["--force"])
    job = job_name("ssot-sync", request_key(params, CONTEXT))

    preview = executor.preview(params)
    assert preview.summary.startswith("Run a Job from CronJob nexus/ssot-sync: image sync:1")
    result = executor.execute(params, preview.snapshot, CONTEXT)

    assert executor.action == "k8s.run_job"
    assert result.summary == (
        f"Would work (server-side dry run accepted): create Job nexus/{job} "
        "from CronJob nexus/ssot-sync"
    )
    assert result.data["checks"] == ["target re-read: unchanged since the preview", DRY_RUN_CHECK]
    assert result.data["would_have"]["job"] == job
    assert result.data["would_have"]["container"]["args"] == ["--force"]
    assert [r.dry_run for r in kube.creates()] == [True, True]  # preview, execution
    assert kube.creates()[-1].body["metadata"]["name"] == job
    assert kube.jobs() == []
    # Only the CronJob was read: no Job polled, no pod listed, no log read.
    assert {r.path.split("/")[-2] for r in kube.requests if r.method == "GET"} == {"cronjobs"}
    assert result.undo is None


def test_run_job_rehearsal_keeps_the_checks_and_names_a_denial(
    kube: FakeKubernetes, api_client: client.ApiClient
) -> None:
    kube.add_cronjob("nexus", "ssot-sync", image="sync:1")
    executor = run_job_rehearsal(api_client)
    params = RunJob(namespace="nexus", cronjob="ssot-sync")
    snapshot = executor.preview(params).snapshot

    kube.forbid("create", "jobs", "nexus")
    with pytest.raises(ActionError, match="Would not have worked") as denied:
        executor.execute(params, snapshot, CONTEXT)
    assert 'the verb "create" on "jobs" (API group batch)' in str(denied.value)

    kube.update_cronjob(
        "nexus",
        "ssot-sync",
        lambda c: c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0].update(
            image="sync:2"
        ),
    )
    with pytest.raises(TargetChanged, match=r"Rehearsal stopped: .* image sync:1 → sync:2"):
        executor.execute(params, snapshot, CONTEXT)
    assert kube.creates(dry_run=False) == []


def test_dry_run_api_cannot_create_a_job(
    kube: FakeKubernetes, api_client: client.ApiClient
) -> None:
    pod = {"containers": [{"name": "c", "image": "i:1"}], "restartPolicy": "Never"}
    body = {"metadata": {"name": "one-off"}, "spec": {"template": {"spec": pod}}}

    DryRunKubeApi(api_client, 10).create_job("nexus", body, dry_run=False)

    assert [r.dry_run for r in kube.creates()] == [True]
    assert kube.jobs() == []
