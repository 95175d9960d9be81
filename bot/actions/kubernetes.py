"""Kubernetes executors: scale, rollout restart, rollout undo, ConfigMap patch.

Each executor takes its own ``ApiClient`` (see `kube_api_client`); nothing here
touches the client library's global default configuration, so tests and
several clusters can coexist in one process.

Objects are read as raw JSON (``_preload_content=False``), not as the client's
typed models: the models silently drop fields this client version does not
know, and a rollback that copies a ReplicaSet's pod template through them would
strip those fields from the Deployment.

Every write is guarded twice: execution re-reads the object and compares it
with the preview's snapshot (``TargetChanged`` otherwise), and the patch carries
the ``resourceVersion`` just read, so the API server refuses it (409) if anyone
changed the object in between; the bot then re-reads and re-checks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from bot.actions.base import (
    ActionError,
    ActionUnavailable,
    ExecutionContext,
    ExecutionResult,
    Preview,
    TargetChanged,
    Undo,
)
from bot.actions.catalog import PatchConfigMap, RolloutRestart, RolloutUndo, ScaleDeployment
from bot.actions.registry import ActionParams

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
FIELD_MANAGER = "nexus-incident-bot"  # shows up in managedFields: who changed what
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
_CONFLICT_ATTEMPTS = 3
_DRY_RUN_OK = "Server-side dry run passed: RBAC and admission accept this change"
P = TypeVar("P", bound=ActionParams)
T = TypeVar("T")

# kubernetes.config is untyped; the signatures relied on here.
_client_from_kubeconfig: Callable[..., client.ApiClient] = config.new_client_from_config
_load_incluster_config: Callable[..., None] = config.load_incluster_config


def kube_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """An API client from ``kubeconfig`` (or $KUBECONFIG), else the pod's service account."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        files = [os.path.expanduser(p) for p in path.split(os.pathsep) if p]
        if not any(os.path.isfile(f) for f in files):
            raise ActionUnavailable(f"kubeconfig {path} not found: Kubernetes actions are off")
        try:
            # persist_config=False: never write refreshed credentials back into the file.
            return _client_from_kubeconfig(config_file=path, persist_config=False)
        except Exception as exc:  # malformed YAML, no current context, unknown auth plugin...
            raise ActionUnavailable(f"cannot use kubeconfig {path}: {_first_line(exc)}") from None
    configuration = client.Configuration()
    try:
        _load_incluster_config(client_configuration=configuration)
    except Exception as exc:
        raise ActionUnavailable(
            "no Kubernetes credentials: configure a kubeconfig (or set $KUBECONFIG), or run "
            f"the bot in a pod with a service account (in-cluster config: {_first_line(exc)})"
        ) from None
    return client.ApiClient(configuration)


class _Conflict(ActionError):
    """409: the object changed between our read and our patch."""


@dataclass(frozen=True)
class _Op:
    """One API call, described for error messages."""

    verb: str  # the RBAC verb: get, list, patch
    resource: str  # as RBAC names it: deployments/scale, replicasets, configmaps
    group: str  # API group; "" is core
    namespace: str
    what: str  # "deployment ai/frenly-ai"


class _Kube:
    """The handful of API calls the executors make, as JSON dicts, with errors for humans."""

    def __init__(self, api_client: client.ApiClient, timeout: float) -> None:
        self._api_client = api_client
        self._apps = client.AppsV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._timeout = timeout

    def deployment(self, ns: str, name: str) -> dict[str, Any]:
        op = _Op("get", "deployments", "apps", ns, f"deployment {ns}/{name}")
        return self._call(op, self._apps.read_namespaced_deployment, name, ns)

    def patch_deployment(
        self, ns: str, name: str, body: Any, *, dry_run: bool = False
    ) -> dict[str, Any]:
        op = _Op("patch", "deployments", "apps", ns, f"deployment {ns}/{name}")
        return self._patch(op, self._apps.patch_namespaced_deployment, name, ns, body, dry_run)

    def scale(self, ns: str, name: str) -> dict[str, Any]:
        op = _Op("get", "deployments/scale", "apps", ns, f"deployment {ns}/{name}")
        return self._call(op, self._apps.read_namespaced_deployment_scale, name, ns)

    def patch_scale(
        self, ns: str, name: str, body: Any, *, dry_run: bool = False
    ) -> dict[str, Any]:
        op = _Op("patch", "deployments/scale", "apps", ns, f"deployment {ns}/{name}")
        return self._patch(
            op, self._apps.patch_namespaced_deployment_scale, name, ns, body, dry_run
        )

    def replicasets(self, ns: str, selector: str) -> list[dict[str, Any]]:
        op = _Op("list", "replicasets", "apps", ns, f"the ReplicaSets in namespace {ns}")
        answer = self._call(op, self._apps.list_namespaced_replica_set, ns, label_selector=selector)
        return list(answer.get("items") or [])

    def configmap(self, ns: str, name: str) -> dict[str, Any]:
        op = _Op("get", "configmaps", "", ns, f"ConfigMap {ns}/{name}")
        return self._call(op, self._core.read_namespaced_config_map, name, ns)

    def patch_configmap(
        self, ns: str, name: str, body: Any, *, dry_run: bool = False
    ) -> dict[str, Any]:
        op = _Op("patch", "configmaps", "", ns, f"ConfigMap {ns}/{name}")
        return self._patch(op, self._core.patch_namespaced_config_map, name, ns, body, dry_run)

    def _patch(
        self, op: _Op, method: Callable[..., Any], name: str, ns: str, body: Any, dry_run: bool
    ) -> dict[str, Any]:
        # A dict body goes out as a strategic merge patch, a list as a JSON patch.
        return self._call(
            op,
            method,
            name,
            ns,
            body,
            dry_run="All" if dry_run else None,
            field_manager=FIELD_MANAGER,
        )

    def _call(
        self, op: _Op, method: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        try:
            response = method(
                *args, _preload_content=False, _request_timeout=self._timeout, **kwargs
            )
            answer = json.loads(response.data)
        except ApiException as exc:
            raise self._error(op, exc) from None
        except urllib3.exceptions.HTTPError as exc:
            host = self._api_client.configuration.host
            raise ActionError(
                self._redact(f"cannot reach the Kubernetes API at {host} ({_first_line(exc)})")
            ) from None
        except ValueError:
            raise ActionError(f"the Kubernetes API answered {op.what} with invalid JSON") from None
        if not isinstance(answer, dict):
            raise ActionError(f"the Kubernetes API answered {op.what} with unexpected JSON")
        return answer

    def _error(self, op: _Op, exc: ApiException) -> ActionError:
        status = int(exc.status or 0)
        reason, message = str(exc.reason or ""), ""
        try:
            body = json.loads(exc.body or "")
            reason = str(body.get("reason") or reason)
            message = str(body.get("message") or "")
        except (ValueError, AttributeError):
            message = str(exc.body or "")
        said = f"{status} {reason}: {_trim(message, 300)}" if message else f"{status} {reason}"
        group = op.group or "core"
        if status == 401:
            text = (
                f"Kubernetes rejected the bot's credentials trying to {op.verb} {op.what} "
                f"({status} {reason}): the kubeconfig or service-account token is missing, "
                "expired or invalid"
            )
        elif status == 403:
            text = (
                f"Kubernetes RBAC does not let the bot {op.verb} {op.resource} in namespace "
                f'{op.namespace} ({op.what}): grant its service account the verb "{op.verb}" on '
                f'"{op.resource}" (API group {group}) in a Role. Server said: {said}'
            )
        elif status == 404 and op.verb != "list":
            text = f"{op.what} not found"
        elif status == 409:
            return _Conflict(self._redact(f"{op.what} changed during the update ({said})"))
        else:
            text = f"Kubernetes refused to {op.verb} {op.what}: {said}"
        return ActionError(self._redact(text))

    def _redact(self, text: str) -> str:
        """Servers and proxies may echo headers back: never let a credential into a message."""
        configuration = self._api_client.configuration
        secrets = [str(v) for v in (configuration.api_key or {}).values() if v]
        secrets += [str(configuration.password or "")]
        for secret in secrets:
            for value in (secret, secret.removeprefix("Bearer ").strip()):
                if len(value) >= 6:
                    text = text.replace(value, "[redacted]")
        return text


class _KubeExecutor:
    action: str

    def __init__(self, api_client: client.ApiClient, *, request_timeout: float = 30.0) -> None:
        self._kube = _Kube(api_client, request_timeout)

    @staticmethod
    def _retrying(what: str, attempt: Callable[[], T]) -> T:
        """Run read-check-patch again when the patch lost a race (409); the check re-runs too."""
        for _ in range(_CONFLICT_ATTEMPTS):
            try:
                return attempt()
            except _Conflict:
                continue
        raise TargetChanged(f"{what} kept changing while the bot tried to update it; nothing done")


class ScaleExecutor(_KubeExecutor):
    action = "k8s.scale"

    def preview(self, params: ActionParams) -> Preview:
        p = _expect(params, ScaleDeployment)
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
        details = [f"Now: {current} replicas wanted, {running} running", _DRY_RUN_OK]
        if p.replicas == 0 and current > 0:
            details.append("Scaling to 0 stops every pod of the deployment")
        snapshot = {"replicas": current, "resource_version": _rv(scale)}
        return Preview(summary, details, snapshot)

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        p = _expect(params, ScaleDeployment)
        what = f"deployment {p.namespace}/{p.deployment}"
        seen = _snapshot(snapshot, "replicas", int)

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
            body = {"metadata": {"resourceVersion": _rv(scale)}, "spec": {"replicas": p.replicas}}
            return self._kube.patch_scale(p.namespace, p.deployment, body)

        scale = self._retrying(what, attempt)
        undo = None
        if p.replicas < seen:
            back = {"namespace": p.namespace, "deployment": p.deployment, "replicas": seen}
            if _valid(ScaleDeployment, back):
                undo = Undo(f"Restore {seen} replicas", self.action, back)
        if seen == p.replicas:
            summary = f"{what} already had {seen} replicas; nothing changed"
        else:
            summary = f"Scaled {what} from {seen} to {p.replicas} replicas"
        return ExecutionResult(
            summary=summary,
            details=[f"resourceVersion {_rv(scale)}"],
            undo=undo,
            data={
                "namespace": p.namespace,
                "deployment": p.deployment,
                "from_replicas": seen,
                "to_replicas": p.replicas,
                "resource_version": _rv(scale),
            },
        )


class RolloutRestartExecutor(_KubeExecutor):
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
        p = _expect(params, RolloutRestart)
        what = f"deployment {p.namespace}/{p.deployment}"
        deployment = self._kube.deployment(p.namespace, p.deployment)
        _refuse_paused(deployment, what, "restart")
        self._kube.patch_deployment(
            p.namespace, p.deployment, _restart_patch(self._now(), None), dry_run=True
        )
        spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
        replicas = int(spec.get("replicas") or 0)
        last = _restarted_at(deployment)
        ready, updated = status.get("readyReplicas") or 0, status.get("updatedReplicas") or 0
        details = [
            f"Now: {replicas} replicas, {ready} ready, {updated} up to date; "
            f"generation {_generation(deployment)}",
            f"Last restart: {last or 'none recorded'}",
            _DRY_RUN_OK,
        ]
        summary = f"rollout restart {what}: replace its {replicas} pods with a rolling update"
        snapshot = {"generation": _generation(deployment), "restarted_at": last}
        return Preview(summary, details, snapshot)

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        p = _expect(params, RolloutRestart)
        what = f"deployment {p.namespace}/{p.deployment}"
        if "restarted_at" not in snapshot:  # None is a value: "never restarted"
            raise ActionError("the approval's preview lacks 'restarted_at'; preview again")
        seen = snapshot["restarted_at"]
        stamp = self._now()

        def attempt() -> tuple[dict[str, Any], dict[str, Any]]:
            before = self._kube.deployment(p.namespace, p.deployment)
            _refuse_paused(before, what, "restart")
            if _restarted_at(before) != seen:
                raise TargetChanged(
                    f"{what} was restarted at {_restarted_at(before)} since the preview; "
                    "nothing done"
                )
            body = _restart_patch(stamp, _rv(before))
            return before, self._kube.patch_deployment(p.namespace, p.deployment, body)

        before, after = self._retrying(what, attempt)
        old, new = _generation(before), _generation(after)
        return ExecutionResult(
            summary=f"Restarted {what}: a rolling update replaces its pods",
            details=[f"restartedAt {stamp}", f"generation {old} → {new}"],
            data={"restarted_at": stamp, "generation": new, "previous_generation": old},
        )

    def _now(self) -> str:
        # RFC 3339 in UTC, as the annotation's readers (kubectl, dashboards) expect.
        return self._clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _Rollback:
    current_revision: int
    target_revision: int
    replicaset: str
    template: dict[str, Any]  # the ReplicaSet's pod template, hash label removed
    annotations: dict[str, str]  # the Deployment's annotations after the rollback
    images: list[str]  # "container: now → then"
    next_revision: int


class RolloutUndoExecutor(_KubeExecutor):
    """`kubectl rollout undo`, which is client-side: copy an old ReplicaSet's pod template back."""

    action = "k8s.rollout_undo"

    def preview(self, params: ActionParams) -> Preview:
        p = _expect(params, RolloutUndo)
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
        details = [*plan.images, f"ReplicaSet {plan.replicaset}", _DRY_RUN_OK]
        snapshot = {
            "current_revision": plan.current_revision,
            "target_revision": plan.target_revision,
            "target_rs_name": plan.replicaset,
        }
        return Preview(summary, details, snapshot)

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        p = _expect(params, RolloutUndo)
        what = f"deployment {p.namespace}/{p.deployment}"
        current = _snapshot(snapshot, "current_revision", int)
        target = _snapshot(snapshot, "target_revision", int)
        replicaset = _snapshot(snapshot, "target_rs_name", str)

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
            body = _rollback_patch(plan, _rv(deployment))
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
        _refuse_paused(deployment, what, "roll back")
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


class ConfigMapPatchExecutor(_KubeExecutor):
    action = "k8s.configmap_patch"

    def preview(self, params: ActionParams) -> Preview:
        p = _expect(params, PatchConfigMap)
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
        return Preview(summary, [*changes, _DRY_RUN_OK], {"old_values": old})

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        p = _expect(params, PatchConfigMap)
        what = f"ConfigMap {p.namespace}/{p.name}"
        old: dict[str, str | None] = dict(_snapshot(snapshot, "old_values", dict))
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
            body = {"metadata": {"resourceVersion": _rv(configmap)}, "data": dict(p.data)}
            return self._kube.patch_configmap(p.namespace, p.name, body)

        patched = self._retrying(what, attempt)
        changes = [f"{key}: {_show(old[key])} → {_show(p.data[key])}" for key in sorted(old)]
        undo = None
        previous = {k: v for k, v in old.items() if v is not None}
        # Undo only when every key existed: a patch can set values but not delete keys.
        if len(previous) == len(old) and previous != p.data:
            pairs = ", ".join(f"{k}={_trim(v, 40)}" for k, v in sorted(previous.items()))
            back = {"namespace": p.namespace, "name": p.name, "data": previous}
            if _valid(PatchConfigMap, back):
                undo = Undo(f"Restore {p.name} ({pairs})", self.action, back)
        told = "; ".join(changes) if len(changes) <= 2 else f"{len(changes)} keys set"
        return ExecutionResult(
            summary=f"Patched {what}: {told}",
            details=changes,
            undo=undo,
            data={"old_values": old, "new_values": dict(p.data), "resource_version": _rv(patched)},
        )


# -- helpers ------------------------------------------------------------------------------


def _expect(params: ActionParams, kind: type[P]) -> P:
    if not isinstance(params, kind):
        raise TypeError(f"expected {kind.__name__} parameters, got {type(params).__name__}")
    return params


def _snapshot(snapshot: dict[str, Any], key: str, kind: type[T]) -> T:
    value = snapshot.get(key)
    # bool is an int in Python; a JSON true is never a replica count or a revision.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ActionError(f"the approval's preview lacks {key!r}; preview again")
    return value


def _valid(model: type[ActionParams], params: dict[str, Any]) -> bool:
    try:
        model.model_validate(params)
    except ValidationError:
        return False
    return True


def _rv(obj: dict[str, Any]) -> str | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return str(value) if value is not None else None


def _generation(obj: dict[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


def _spec_replicas(scale: dict[str, Any]) -> int:
    # The API omits zero values: a missing spec.replicas on a Scale means 0.
    return int((scale.get("spec") or {}).get("replicas") or 0)


def _revision(obj: dict[str, Any]) -> int:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, "")
    try:
        return int(value)
    except ValueError:
        return 0


def _restarted_at(deployment: dict[str, Any]) -> str | None:
    template = (deployment.get("spec") or {}).get("template") or {}
    value = ((template.get("metadata") or {}).get("annotations") or {}).get(RESTARTED_AT)
    return str(value) if value is not None else None


def _refuse_paused(deployment: dict[str, Any], what: str, doing: str) -> None:
    # As kubectl: a paused deployment would not roll out the change; resuming is a human call.
    if (deployment.get("spec") or {}).get("paused"):
        raise ActionError(
            f"{what} is paused: cannot {doing} it; resume it first (kubectl rollout resume)"
        )


def _restart_patch(stamp: str, resource_version: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}
    }
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    return body


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


def _data(configmap: dict[str, Any]) -> dict[str, str]:
    return dict(configmap.get("data") or {})


def _show(value: str | None) -> str:
    return "(absent)" if value is None else _trim(json.dumps(value), 80)


def _trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_line(exc: BaseException) -> str:
    # Only the first line: YAML errors quote the offending line, which may hold a token.
    lines = str(exc).strip().splitlines()
    return _trim(lines[0] if lines else type(exc).__name__, 200)
