"""k8s.configmap_patch: old → new per key, guarded execution, undo with the old values."""

from __future__ import annotations

import pytest
from kubernetes import client

from bot.actions.base import ActionError, ExecutionContext, TargetChanged, Undo
from bot.actions.catalog import PatchConfigMap
from bot.actions.kubernetes_configmap import ConfigMapPatchExecutor
from tests.fakes.kubernetes import FakeKubernetes

NS = "ai"  # as seeded by the kube fixture (conftest.py)

NAME = "ssot-config"


def patch(**data: str) -> PatchConfigMap:
    return PatchConfigMap(namespace=NS, name=NAME, data=data)


def data(kube: FakeKubernetes) -> dict[str, str]:
    return dict(kube.configmap(NS, NAME)["data"])


def test_old_to_new_then_undo_restores(
    kube: FakeKubernetes, api_client: client.ApiClient, context: ExecutionContext
) -> None:
    executor = ConfigMapPatchExecutor(api_client)
    assert executor.action == "k8s.configmap_patch"

    preview = executor.preview(patch(enabled="false"))

    assert preview.summary == f'ConfigMap {NS}/{NAME}: enabled: "true" → "false"'
    assert preview.snapshot == {"old_values": {"enabled": "true"}}
    [dry] = kube.patches()
    assert dry.dry_run and dry.body == {"data": {"enabled": "false"}}
    assert data(kube)["enabled"] == "true"

    result = executor.execute(patch(enabled="false"), preview.snapshot, context)

    assert data(kube) == {"enabled": "false", "mode": "auto"}  # other keys untouched
    assert result.undo == Undo(
        "Restore ssot-config (enabled=true)",
        "k8s.configmap_patch",
        {"namespace": NS, "name": NAME, "data": {"enabled": "true"}},
    )
    assert result.data["old_values"] == {"enabled": "true"}

    back = PatchConfigMap.model_validate(result.undo.params)
    executor.execute(back, executor.preview(back).snapshot, context)
    assert data(kube) == {"enabled": "true", "mode": "auto"}


def test_absent_key_is_shown_and_no_undo_is_offered(
    kube: FakeKubernetes, api_client: client.ApiClient, context: ExecutionContext
) -> None:
    executor = ConfigMapPatchExecutor(api_client)
    params = patch(enabled="false", freeze="yes")
    preview = executor.preview(params)

    assert preview.summary == f"ConfigMap {NS}/{NAME}: set 2 keys"
    assert 'enabled: "true" → "false"' in preview.details
    assert 'freeze: (absent) → "yes"' in preview.details
    assert preview.snapshot == {"old_values": {"enabled": "true", "freeze": None}}

    result = executor.execute(params, preview.snapshot, context)

    assert data(kube)["freeze"] == "yes"
    assert result.undo is None  # a patch cannot delete the key again


def test_value_changed_after_preview_is_refused(
    kube: FakeKubernetes, api_client: client.ApiClient, context: ExecutionContext
) -> None:
    executor = ConfigMapPatchExecutor(api_client)
    preview = executor.preview(patch(enabled="false"))
    kube.set_configmap_data(NS, NAME, {"enabled": "paused"})

    with pytest.raises(
        TargetChanged, match=r'enabled is now "paused" \(was "true"\); nothing done'
    ):
        executor.execute(patch(enabled="false"), preview.snapshot, context)

    assert kube.patches(dry_run=False) == []
    assert data(kube)["enabled"] == "paused"


def test_unrelated_key_changed_during_patch_is_retried(
    kube: FakeKubernetes, api_client: client.ApiClient, context: ExecutionContext
) -> None:
    executor = ConfigMapPatchExecutor(api_client)
    preview = executor.preview(patch(enabled="false"))
    kube.before_next(
        "patch", "configmaps", lambda: kube.set_configmap_data(NS, NAME, {"mode": "x"})
    )

    executor.execute(patch(enabled="false"), preview.snapshot, context)

    assert [p.status for p in kube.patches(dry_run=False)] == [409, 200]
    assert data(kube) == {"enabled": "false", "mode": "x"}


def test_missing_configmap_is_a_clear_error(api_client: client.ApiClient) -> None:
    params = PatchConfigMap(namespace=NS, name="nope", data={"a": "b"})
    with pytest.raises(ActionError, match=f"^ConfigMap {NS}/nope not found$"):
        ConfigMapPatchExecutor(api_client).preview(params)


def test_snapshot_for_other_keys_is_refused(
    api_client: client.ApiClient, context: ExecutionContext
) -> None:
    snapshot = {"old_values": {"mode": "auto"}}
    with pytest.raises(ActionError, match="preview again"):
        ConfigMapPatchExecutor(api_client).execute(patch(enabled="false"), snapshot, context)
