"""k8s.rollout_undo: `kubectl rollout undo`, an old ReplicaSet's pod template copied back."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bot.actions.base import ActionError, ExecutionContext, ExecutionResult, Preview, TargetChanged
from bot.actions.catalog import RolloutUndo
from bot.actions.kubernetes_base import (
    DRY_RUN_OK,
    KubeExecutor,
    expect_params,
    refuse_paused,
    resource_version_of,
    snapshot_field,
)
from bot.actions.registry import ActionParams

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
# Deployment annotations `kubectl rollout undo` keeps instead of copying them from the ReplicaSet.
_KEEP_ON_ROLLBACK = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


@dataclass(frozen=True)
class _Rollback:
    current_revision: int
    target_revision: int
    replicaset: str
    template: dict[str, Any]  # the ReplicaSet's pod template, hash label removed
    annotations: dict[str, str]  # the Deployment's annotations after the rollback
    images: list[str]  # "container: now → then"
    next_revision: int


class RolloutUndoExecutor(KubeExecutor):
    """`kubectl rollout undo`, which is client-side: copy an old ReplicaSet's pod template back."""

    action = "k8s.rollout_undo"

    def preview(self, params: ActionParams) -> Preview:
        p = expect_params(params, RolloutUndo)
        what = f"deployment {p.namespace}/{p.deployment}"
        deployment = self._kube.deployment(p.namespace, p.deployment)
        plan = self._plan(deployment, what, p.to_revision)
        self._kube.patch_deployment(
            p.namespace, p.deployment, _rollback_patch(plan, None), dry_run=True
        )
        summary = (
            f"roll {what} back from revision {plan.current_revision} "
            f"to revision {plan.target_revision}"
        )
        details = [*plan.images, f"ReplicaSet {plan.replicaset}", DRY_RUN_OK]
        snapshot = {
            "current_revision": plan.current_revision,
            "target_revision": plan.target_revision,
            "target_rs_name": plan.replicaset,
        }
        return Preview(summary, details, snapshot)

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        p = expect_params(params, RolloutUndo)
        what = f"deployment {p.namespace}/{p.deployment}"
        current = snapshot_field(snapshot, "current_revision", int)
        target = snapshot_field(snapshot, "target_revision", int)
        replicaset = snapshot_field(snapshot, "target_rs_name", str)

        def attempt() -> _Rollback:
            deployment = self._kube.deployment(p.namespace, p.deployment)
            now = _revision(deployment)
            if now != current:
                raise TargetChanged(
                    f"{what} moved from revision {current} to {now} since the preview; nothing done"
                )
            plan = self._plan(deployment, what, target)
            if plan.replicaset != replicaset:
                raise TargetChanged(
                    f"revision {target} of {what} is now ReplicaSet {plan.replicaset}, not "
                    f"{replicaset} as previewed; nothing done"
                )
            body = _rollback_patch(plan, resource_version_of(deployment))
            self._kube.patch_deployment(p.namespace, p.deployment, body)
            return plan

        plan = self._retrying(what, attempt)
        return ExecutionResult(
            summary=f"Rolled {what} back from revision {current} to revision {target}",
            details=[
                *plan.images,
                f"The controller records it as revision {plan.next_revision}",
            ],
            data={
                "from_revision": current,
                "to_revision": target,
                "replicaset": plan.replicaset,
                "images": plan.images,
            },
        )

    def _plan(self, deployment: dict[str, Any], what: str, to_revision: int | None) -> _Rollback:
        refuse_paused(deployment, what, "roll back")
        meta, spec = deployment.get("metadata") or {}, deployment.get("spec") or {}
        namespace = str(meta.get("namespace") or "")
        owned = [
            rs
            for rs in self._kube.replicasets(namespace, _selector(spec.get("selector") or {}))
            if _controller_uid(rs) == meta.get("uid")
        ]
        by_revision = {_revision(rs): rs for rs in owned if _revision(rs) > 0}
        history = ", ".join(str(r) for r in sorted(by_revision)) or "none"
        current = _revision(deployment) or max(by_revision, default=0)
        if to_revision is not None:
            if to_revision not in by_revision:
                raise ActionError(
                    f"revision {to_revision} of {what} not found (revisions kept: {history})"
                )
            target = to_revision
        else:
            older = [r for r in by_revision if r < current]
            if not older:
                raise ActionError(
                    f"{what} has no previous revision to roll back to (revisions kept: {history})"
                )
            target = max(older)
        replicaset = by_revision[target]
        template = _without_hash((replicaset.get("spec") or {}).get("template") or {})
        # Never let the revision bookkeeping leak into the pod template.
        template_annotations = (template.get("metadata") or {}).get("annotations")
        if isinstance(template_annotations, dict):
            template_annotations.pop(REVISION, None)
        now_template = spec.get("template") or {}
        if _without_hash(now_template) == template:
            raise ActionError(
                f"{what} already runs the pod template of revision {target} "
                f"(current revision {current}); nothing to roll back"
            )
        annotations = {
            k: v for k, v in (meta.get("annotations") or {}).items() if k in _KEEP_ON_ROLLBACK
        }
        for key, value in ((replicaset.get("metadata") or {}).get("annotations") or {}).items():
            if key not in _KEEP_ON_ROLLBACK:
                annotations[key] = value
        return _Rollback(
            current_revision=current,
            target_revision=target,
            replicaset=str((replicaset.get("metadata") or {}).get("name") or ""),
            template=template,
            annotations=annotations,
            images=_image_changes(now_template, template),
            next_revision=max(by_revision) + 1,
        )


def _revision(obj: dict[str, Any]) -> int:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, "")
    try:
        return int(value)
    except ValueError:
        return 0


def _rollback_patch(plan: _Rollback, resource_version: str | None) -> list[dict[str, Any]]:
    # The JSON patch kubectl sends; "add" also works when the deployment has no annotations.
    ops: list[dict[str, Any]] = [
        {"op": "replace", "path": "/spec/template", "value": plan.template},
        {"op": "add", "path": "/metadata/annotations", "value": plan.annotations},
    ]
    if resource_version is not None:
        ops.append(
            {"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version}
        )
    return ops


def _selector(selector: dict[str, Any]) -> str:
    """A LabelSelector object in the query syntax (matchLabels and matchExpressions)."""
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op in ("In", "NotIn"):
            terms.append(f"{key} {op.lower()} ({','.join(values)})")
        elif op == "Exists":
            terms.append(str(key))
        elif op == "DoesNotExist":
            terms.append(f"!{key}")
    return ",".join(terms)


def _controller_uid(obj: dict[str, Any]) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    clean = json.loads(json.dumps(template))  # a deep copy of plain JSON
    labels = (clean.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return dict(clean)


def _images(template: dict[str, Any]) -> dict[str, str]:
    spec = template.get("spec") or {}
    containers: Iterable[dict[str, Any]] = [
        *(spec.get("initContainers") or []),
        *(spec.get("containers") or []),
    ]
    return {str(c.get("name")): str(c.get("image")) for c in containers}


def _image_changes(now: dict[str, Any], then: dict[str, Any]) -> list[str]:
    before, after = _images(now), _images(then)
    lines = []
    for name in [*before, *(n for n in after if n not in before)]:
        old, new = before.get(name, "(none)"), after.get(name, "(none)")
        lines.append(f"image {name}: {old} → {new}" if old != new else f"image {name}: {old}")
    if before == after:
        lines.append("Same images: the pod templates differ in other fields")
    return lines
