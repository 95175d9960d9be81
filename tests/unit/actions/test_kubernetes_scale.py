"""k8s.scale: preview with a server-side dry run, guarded execution, undo offer."""

from __future__ import annotations

import pytest
from kubernetes import client

from bot.actions.base import ActionError, ExecutionContext, TargetChanged, Undo
from bot.actions.catalog import ScaleDeployment
from bot.actions.kubernetes_scale import ScaleExecutor
from tests.fakes.kubernetes import FakeKubernetes

NS, APP = "ai", "frenly-ai"  # as seeded by the kube fixture (conftest.py)


def scale(replicas: int) -> ScaleDeployment:
    return ScaleDeployment(namespace=NS, deployment=APP, replicas=replicas)


def replicas(kube: FakeKubernetes) -> int:
    return int(kube.deployment(NS, APP)["spec"]["replicas"])


def test_scale_to_zero_previews_dry_runs_executes_and_offers_undo(
    kube: FakeKubernetes, api_client: client.ApiClient, context: ExecutionContext
) -> None:
    executor = ScaleExecutor(api_client)
    assert executor.action == "k8s.scale"

    preview = executor.preview(scale(0))

    assert preview.summary == f"deployment {NS}/{APP}: 3 → 0 replicas"
    assert "Now: 3 replicas wanted, 3 running" in preview.details
    assert any("dry run passed" in line for line in preview.details)
    assert preview.snapshot["replicas"] == 3
    assert preview.snapshot["resource_version"]
    [dry] = kube.patches()
    assert dry.dry_run and dry.path.endswith(f"/deployments/{APP}/scale")
    assert dry.body == {"spec": {"replicas": 0}}
    assert replicas(kube) == 3  # the dry run changed nothing

    result = executor.execute(scale(0), preview.snapshot, context)

    assert replicas(kube) == 0
    assert result.summary == f"Scaled deployment {NS}/{APP} from 3 to 0 replicas"
    assert result.undo == Undo(
        "Restore 3 replicas", "k8s.scale", {"namespace": NS, "deployment": APP, "replicas": 3}
    )
    ScaleDeployment.model_validate(result.undo.params)  # the undo is a valid request
    assert result.data["from_replicas"] == 3 and result.data["to_replicas"] == 0
    real = kube.patches(dry_run=False)[-1]
    assert real.content_type == "application/strategic-merge-patch+json"
    assert real.body["metadata"]["resourceVersion"] == preview.snapshot["resource_version"]
    assert real.query.get("fieldManager") == "nexus-incident-bot"


def test_replicas_changed_after_preview_is_refused_and_nothing_patched(
    kube: FakeKubernetes, api_client: client.ApiClient, context: ExecutionContext
) -> None:
    executor = ScaleExecutor(api_client)
    preview = executor.preview(scale(0))
    kube.update_deployment(NS, APP, lambda d: d["spec"].update(replicas=5))  # an HPA, a human

    with pytest.raises(TargetChanged, match="replicas changed from 3 to 5 since the preview"):
        executor.execute(scale(0), preview.snapshot, context)

    assert kube.patches(dry_run=False) == []
    assert replicas(kube) == 5


def test_change_between_recheck_and_patch_loses_the_race_then_is_caught(
    kube: FakeKubernetes, api_client: client.ApiClient, context: ExecutionContext
) -> None:
    """The patch carries the resourceVersion it checked: a change in between → 409 → re-check."""
    executor = ScaleExecutor(api_client)
    preview = executor.preview(scale(0))
    kube.before_next(
        "patch",
        "deployments/scale",
        lambda: kube.update_deployment(NS, APP, lambda d: d["spec"].update(replicas=6)),
    )

    with pytest.raises(TargetChanged, match="from 3 to 6"):
        executor.execute(scale(0), preview.snapshot, context)

    assert [p.status for p in kube.patches(dry_run=False)] == [409]
    assert replicas(kube) == 6


def test_unrelated_change_during_patch_is_retried(
    kube: FakeKubernetes, api_client: client.ApiClient, context: ExecutionContext
) -> None:
    executor = ScaleExecutor(api_client)
    preview = executor.preview(scale(1))
    kube.before_next("patch", "deployments/scale", lambda: kube.touch(NS, APP))  # status update

    result = executor.execute(scale(1), preview.snapshot, context)

    assert [p.status for p in kube.patches(dry_run=False)] == [409, 200]
    assert replicas(kube) == 1
    assert result.undo is not None and result.undo.params["replicas"] == 3


def test_scale_up_offers_no_undo_and_same_count_patches_nothing(
    kube: FakeKubernetes, api_client: client.ApiClient, context: ExecutionContext
) -> None:
    executor = ScaleExecutor(api_client)
    up = executor.execute(scale(4), executor.preview(scale(4)).snapshot, context)
    assert up.undo is None and replicas(kube) == 4

    before = len(kube.patches(dry_run=False))
    preview = executor.preview(scale(4))
    assert "already" in preview.summary
    same = executor.execute(scale(4), preview.snapshot, context)
    assert same.summary == f"deployment {NS}/{APP} already had 4 replicas; nothing changed"
    assert same.undo is None
    assert len(kube.patches(dry_run=False)) == before


def test_rbac_denial_surfaces_in_the_preview(
    kube: FakeKubernetes, api_client: client.ApiClient
) -> None:
    kube.forbid("patch", "deployments/scale")

    with pytest.raises(ActionError) as caught:
        ScaleExecutor(api_client).preview(scale(0))

    message = str(caught.value)
    assert 'verb "patch" on "deployments/scale"' in message
    assert "namespace ai" in message and "403 Forbidden" in message
    assert replicas(kube) == 3


def test_snapshot_without_replicas_is_refused(
    api_client: client.ApiClient, context: ExecutionContext
) -> None:
    with pytest.raises(ActionError, match="preview again"):
        ScaleExecutor(api_client).execute(scale(0), {"replicas": True}, context)
