"""k8s.configmap_patch: set ConfigMap keys, showing old → new, offering an undo."""

from __future__ import annotations

import json
from typing import Any

from bot.actions.base import (
    ActionError,
    ExecutionContext,
    ExecutionResult,
    Preview,
    TargetChanged,
    Undo,
)
from bot.actions.catalog import PatchConfigMap
from bot.actions.kubernetes_base import (
    DRY_RUN_OK,
    KubeExecutor,
    expect_params,
    resource_version_of,
    snapshot_field,
    valid_params,
)
from bot.actions.kubernetes_client import trim
from bot.actions.registry import ActionParams


class ConfigMapPatchExecutor(KubeExecutor):
    action = "k8s.configmap_patch"

    def preview(self, params: ActionParams) -> Preview:
        p = expect_params(params, PatchConfigMap)
        configmap = self._kube.configmap(p.namespace, p.name)
        self._kube.patch_configmap(p.namespace, p.name, {"data": dict(p.data)}, dry_run=True)
        old = {key: _data(configmap).get(key) for key in sorted(p.data)}
        changes = [f"{key}: {_show(old[key])} → {_show(p.data[key])}" for key in old]
        if len(changes) == 1:
            summary = f"ConfigMap {p.namespace}/{p.name}: {changes[0]}"
        else:
            summary = f"ConfigMap {p.namespace}/{p.name}: set {len(changes)} keys"
        if all(old[key] == p.data[key] for key in old):
            summary += " (already; nothing will change)"
        return Preview(summary, [*changes, DRY_RUN_OK], {"old_values": old})

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        p = expect_params(params, PatchConfigMap)
        what = f"ConfigMap {p.namespace}/{p.name}"
        old: dict[str, str | None] = dict(snapshot_field(snapshot, "old_values", dict))
        if set(old) != set(p.data):
            raise ActionError(f"the preview of {what} covered other keys; preview again")

        def attempt() -> dict[str, Any]:
            configmap = self._kube.configmap(p.namespace, p.name)
            now = _data(configmap)
            for key in sorted(old):
                if now.get(key) != old[key]:
                    raise TargetChanged(
                        f"{what} changed since the preview: {key} is now {_show(now.get(key))} "
                        f"(was {_show(old[key])}); nothing done"
                    )
            body = {
                "metadata": {"resourceVersion": resource_version_of(configmap)},
                "data": dict(p.data),
            }
            return self._kube.patch_configmap(p.namespace, p.name, body)

        patched = self._retrying(what, attempt)
        changes = [f"{key}: {_show(old[key])} → {_show(p.data[key])}" for key in sorted(old)]
        undo = None
        previous = {k: v for k, v in old.items() if v is not None}
        # Undo only when every key existed: a patch can set values but not delete keys.
        if len(previous) == len(old) and previous != p.data:
            pairs = ", ".join(f"{k}={trim(v, 40)}" for k, v in sorted(previous.items()))
            back = {"namespace": p.namespace, "name": p.name, "data": previous}
            if valid_params(PatchConfigMap, back):
                undo = Undo(f"Restore {p.name} ({pairs})", self.action, back)
        told = "; ".join(changes) if len(changes) <= 2 else f"{len(changes)} keys set"
        return ExecutionResult(
            summary=f"Patched {what}: {told}",
            details=changes,
            undo=undo,
            data={
                "old_values": old,
                "new_values": dict(p.data),
                "resource_version": resource_version_of(patched),
            },
        )


def _data(configmap: dict[str, Any]) -> dict[str, str]:
    return dict(configmap.get("data") or {})


def _show(value: str | None) -> str:
    return "(absent)" if value is None else trim(json.dumps(value), 80)
