"""k8s.scale: set a deployment's replicas through its scale subresource, offering an undo."""

from __future__ import annotations

from typing import Any

from bot.actions.base import ExecutionContext, ExecutionResult, Preview, TargetChanged, Undo
from bot.actions.catalog import ScaleDeployment
from bot.actions.kubernetes_base import (
    DRY_RUN_OK,
    KubeExecutor,
    expect_params,
    resource_version_of,
    snapshot_field,
    valid_params,
)
from bot.actions.registry import ActionParams


class ScaleExecutor(KubeExecutor):
    action = "k8s.scale"

    def preview(self, params: ActionParams) -> Preview:
        p = expect_params(params, ScaleDeployment)
        what = f"deployment {p.namespace}/{p.deployment}"
        scale = self._kube.scale(p.namespace, p.deployment)
        current = _spec_replicas(scale)
        running = int((scale.get("status") or {}).get("replicas") or 0)
        self._kube.patch_scale(
            p.namespace, p.deployment, {"spec": {"replicas": p.replicas}}, dry_run=True
        )
        summary = f"{what}: {current} → {p.replicas} replicas"
        if current == p.replicas:
            summary += " (already; nothing will change)"
        details = [f"Now: {current} replicas wanted, {running} running", DRY_RUN_OK]
        if p.replicas == 0 and current > 0:
            details.append("Scaling to 0 stops every pod of the deployment")
        snapshot = {"replicas": current, "resource_version": resource_version_of(scale)}
        return Preview(summary, details, snapshot)

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        p = expect_params(params, ScaleDeployment)
        what = f"deployment {p.namespace}/{p.deployment}"
        seen = snapshot_field(snapshot, "replicas", int)

        def attempt() -> dict[str, Any]:
            scale = self._kube.scale(p.namespace, p.deployment)
            current = _spec_replicas(scale)
            if current != seen:
                raise TargetChanged(
                    f"{what}: replicas changed from {seen} to {current} since the preview; "
                    "nothing done"
                )
            if current == p.replicas:
                return scale
            body = {
                "metadata": {"resourceVersion": resource_version_of(scale)},
                "spec": {"replicas": p.replicas},
            }
            return self._kube.patch_scale(p.namespace, p.deployment, body)

        scale = self._retrying(what, attempt)
        undo = None
        if p.replicas < seen:
            back = {"namespace": p.namespace, "deployment": p.deployment, "replicas": seen}
            if valid_params(ScaleDeployment, back):
                undo = Undo(f"Restore {seen} replicas", self.action, back)
        if seen == p.replicas:
            summary = f"{what} already had {seen} replicas; nothing changed"
        else:
            summary = f"Scaled {what} from {seen} to {p.replicas} replicas"
        return ExecutionResult(
            summary=summary,
            details=[f"resourceVersion {resource_version_of(scale)}"],
            undo=undo,
            data={
                "namespace": p.namespace,
                "deployment": p.deployment,
                "from_replicas": seen,
                "to_replicas": p.replicas,
                "resource_version": resource_version_of(scale),
            },
        )


def _spec_replicas(scale: dict[str, Any]) -> int:
    # The API omits zero values: a missing spec.replicas on a Scale means 0.
    return int((scale.get("spec") or {}).get("replicas") or 0)
