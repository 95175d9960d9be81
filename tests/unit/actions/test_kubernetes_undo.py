"""k8s.rollout_undo: kubectl's client-side rollback, against a controller that keeps revisions."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from bot.actions.base import ActionError, ExecutionContext, TargetChanged
from bot.actions.catalog import RolloutUndo
from bot.actions.kubernetes_undo import HASH_LABEL, REVISION, RolloutUndoExecutor
from tests.fakes.kubernetes import FakeKubernetes

NS, APP = "ai", "frenly-ai"  # as seeded by the kube fixture (conftest.py)

IMAGE = "registry.example/frenly-ai"


def undo(to_revision: int | None = None) -> RolloutUndo:
    return RolloutUndo(namespace=NS, deployment=APP, to_revision=to_revision)


def image(kube: FakeKubernetes) -> str:
    return str(kube.deployment(NS, APP)["spec"]["template"]["spec"]["containers"][0]["image"])


def revision(kube: FakeKubernetes) -> int:
    return int(kube.deployment(NS, APP)["metadata"]["annotations"][REVISION])


@pytest.fixture
def three_revisions(kube: FakeKubernetes) -> FakeKubernetes:
    """Revisions 1 (1.0), 2 (2.0, change-cause noted), 3 (3.0, the bad one, running)."""
    kube.update_deployment(
        NS,
        APP,
        lambda d: d["metadata"]["annotations"].update({"kubernetes.io/change-cause": "v2"}),
    )
    kube.set_image(NS, APP, f"{IMAGE}:2.0")
    kube.update_deployment(
        NS,
        APP,
        lambda d: d["metadata"]["annotations"].update({"kubernetes.io/change-cause": "v3"}),
    )
    kube.set_image(NS, APP, f"{IMAGE}:3.0")
    assert revision(kube) == 3
    return kube


def test_undo_to_previous_revision(
    three_revisions: FakeKubernetes, api_client: client.ApiClient, context: ExecutionContext
) -> None:
    kube = three_revisions
    executor = RolloutUndoExecutor(api_client)
    assert executor.action == "k8s.rollout_undo"

    preview = executor.preview(undo())

    assert preview.summary == f"roll deployment {NS}/{APP} back from revision 3 to revision 2"
    assert f"image {APP}: {IMAGE}:3.0 → {IMAGE}:2.0" in preview.details
    assert preview.snapshot["current_revision"] == 3
    assert preview.snapshot["target_revision"] == 2
    rs2 = next(rs for rs in kube.replicasets(NS) if rs["metadata"]["annotations"][REVISION] == "2")
    assert preview.snapshot["target_rs_name"] == rs2["metadata"]["name"]
    assert image(kube) == f"{IMAGE}:3.0"  # the dry run changed nothing

    result = executor.execute(undo(), preview.snapshot, context)

    assert image(kube) == f"{IMAGE}:2.0"
    assert result.summary == f"Rolled deployment {NS}/{APP} back from revision 3 to revision 2"
    assert "The controller records it as revision 4" in result.details
    deployment = kube.deployment(NS, APP)
    assert HASH_LABEL not in deployment["spec"]["template"]["metadata"]["labels"]
    assert REVISION not in (deployment["spec"]["template"]["metadata"].get("annotations") or {})
    # As kubectl: the ReplicaSet's annotations come back, the revision bookkeeping stays.
    assert deployment["metadata"]["annotations"]["kubernetes.io/change-cause"] == "v2"
    assert revision(kube) == 4
    # The controller re-used revision 2's ReplicaSet instead of making a new one.
    assert len(kube.replicasets(NS)) == 3
    [patch] = kube.patches(dry_run=False)
    assert patch.content_type == "application/json-patch+json"
    ops: list[dict[str, Any]] = patch.body
    assert ops[0]["op"] == "replace" and ops[0]["path"] == "/spec/template"


def test_undo_to_a_chosen_revision(
    three_revisions: FakeKubernetes, api_client: client.ApiClient, context: ExecutionContext
) -> None:
    kube = three_revisions
    executor = RolloutUndoExecutor(api_client)
    preview = executor.preview(undo(1))
    assert preview.summary.endswith("from revision 3 to revision 1")
    assert f"image {APP}: {IMAGE}:3.0 → {IMAGE}:1.0" in preview.details

    executor.execute(undo(1), preview.snapshot, context)

    assert image(kube) == f"{IMAGE}:1.0"
    # Undo again: "previous" is now revision 3 (4 is the 1.0 template), and it comes back.
    again = executor.preview(undo())
    assert again.summary.endswith("from revision 4 to revision 3")
    executor.execute(undo(), again.snapshot, context)
    assert image(kube) == f"{IMAGE}:3.0"


def test_undo_refused_when_paused(
    three_revisions: FakeKubernetes, api_client: client.ApiClient
) -> None:
    three_revisions.update_deployment(NS, APP, lambda d: d["spec"].update(paused=True))
    with pytest.raises(ActionError, match="is paused: cannot roll back"):
        RolloutUndoExecutor(api_client).preview(undo())


def test_undo_refused_without_previous_revision(
    kube: FakeKubernetes, api_client: client.ApiClient
) -> None:
    with pytest.raises(ActionError, match="no previous revision to roll back to"):
        RolloutUndoExecutor(api_client).preview(undo())
    assert kube.patches() == []


def test_undo_refused_for_unknown_revision(
    three_revisions: FakeKubernetes, api_client: client.ApiClient
) -> None:
    with pytest.raises(
        ActionError, match=r"revision 9 of .* not found \(revisions kept: 1, 2, 3\)"
    ):
        RolloutUndoExecutor(api_client).preview(undo(9))


def test_undo_refused_when_template_already_equal(
    three_revisions: FakeKubernetes, api_client: client.ApiClient
) -> None:
    with pytest.raises(ActionError, match="already runs the pod template of revision 3"):
        RolloutUndoExecutor(api_client).preview(undo(3))


def test_new_rollout_after_preview_is_refused(
    three_revisions: FakeKubernetes, api_client: client.ApiClient, context: ExecutionContext
) -> None:
    kube = three_revisions
    executor = RolloutUndoExecutor(api_client)
    preview = executor.preview(undo())
    kube.set_image(NS, APP, f"{IMAGE}:3.1")  # CD ships a fix meanwhile

    with pytest.raises(TargetChanged, match="moved from revision 3 to 4 since the preview"):
        executor.execute(undo(), preview.snapshot, context)

    assert image(kube) == f"{IMAGE}:3.1"
    assert kube.patches(dry_run=False) == []


def test_replicaset_selection_follows_owner_references(
    three_revisions: FakeKubernetes, api_client: client.ApiClient
) -> None:
    """A canary whose ReplicaSets carry the same labels is never a rollback source."""
    kube = three_revisions
    canary = "frenly-ai-canary"
    kube.add_deployment(
        NS, canary, replicas=1, image=f"{IMAGE}:9.0", labels={"app": APP, "track": "canary"}
    )
    for version in ("9.1", "9.2", "9.3"):
        kube.set_image(NS, canary, f"{IMAGE}:{version}")
    assert len(kube.replicasets(NS)) == 7  # the canary has a revision 4, frenly-ai does not
    executor = RolloutUndoExecutor(api_client)

    with pytest.raises(ActionError, match=r"revision 4 .* \(revisions kept: 1, 2, 3\)"):
        executor.preview(undo(4))
    preview = executor.preview(undo())
    assert preview.snapshot["target_revision"] == 2
    assert f"image {APP}: {IMAGE}:3.0 → {IMAGE}:2.0" in preview.details
