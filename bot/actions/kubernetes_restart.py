"""k8s.rollout_restart: `kubectl rollout restart`, a restartedAt stamp on the pod template."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from bot.actions.base import ActionError, ExecutionContext, ExecutionResult, Preview, TargetChanged
from bot.actions.catalog import RolloutRestart
from bot.actions.kubernetes_base import (
    DRY_RUN_OK,
    KubeExecutor,
    expect_params,
    generation_of,
    refuse_paused,
    resource_version_of,
)
from bot.actions.registry import ActionParams

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


class RolloutRestartExecutor(KubeExecutor):
    action = "k8s.rollout_restart"

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        request_timeout: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(api_client, request_timeout=request_timeout)
        self._clock = clock

    def preview(self, params: ActionParams) -> Preview:
        p = expect_params(params, RolloutRestart)
        what = f"deployment {p.namespace}/{p.deployment}"
        deployment = self._kube.deployment(p.namespace, p.deployment)
        refuse_paused(deployment, what, "restart")
        self._kube.patch_deployment(
            p.namespace, p.deployment, _restart_patch(self._now(), None), dry_run=True
        )
        spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
        replicas = int(spec.get("replicas") or 0)
        last = _restarted_at(deployment)
        ready, updated = status.get("readyReplicas") or 0, status.get("updatedReplicas") or 0
        details = [
            f"Now: {replicas} replicas, {ready} ready, {updated} up to date; "
            f"generation {generation_of(deployment)}",
            f"Last restart: {last or 'none recorded'}",
            DRY_RUN_OK,
        ]
        summary = f"rollout restart {what}: replace its {replicas} pods with a rolling update"
        snapshot = {"generation": generation_of(deployment), "restarted_at": last}
        return Preview(summary, details, snapshot)

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        p = expect_params(params, RolloutRestart)
        what = f"deployment {p.namespace}/{p.deployment}"
        if "restarted_at" not in snapshot:  # None is a value: "never restarted"
            raise ActionError("the approval's preview lacks 'restarted_at'; preview again")
        seen = snapshot["restarted_at"]
        stamp = self._now()

        def attempt() -> tuple[dict[str, Any], dict[str, Any]]:
            before = self._kube.deployment(p.namespace, p.deployment)
            refuse_paused(before, what, "restart")
            if _restarted_at(before) != seen:
                raise TargetChanged(
                    f"{what} was restarted at {_restarted_at(before)} since the preview; "
                    "nothing done"
                )
            body = _restart_patch(stamp, resource_version_of(before))
            return before, self._kube.patch_deployment(p.namespace, p.deployment, body)

        before, after = self._retrying(what, attempt)
        old, new = generation_of(before), generation_of(after)
        return ExecutionResult(
            summary=f"Restarted {what}: a rolling update replaces its pods",
            details=[f"restartedAt {stamp}", f"generation {old} → {new}"],
            data={"restarted_at": stamp, "generation": new, "previous_generation": old},
        )

    def _now(self) -> str:
        # RFC 3339 in UTC, as the annotation's readers (kubectl, dashboards) expect.
        return self._clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _restarted_at(deployment: dict[str, Any]) -> str | None:
    template = (deployment.get("spec") or {}).get("template") or {}
    value = ((template.get("metadata") or {}).get("annotations") or {}).get(RESTARTED_AT)
    return str(value) if value is not None else None


def _restart_patch(stamp: str, resource_version: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}
    }
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    return body
