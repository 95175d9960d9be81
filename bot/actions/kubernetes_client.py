"""The Kubernetes API as the executors use it: one client per kubeconfig, JSON in and out.

Each executor takes its own ``ApiClient`` (see `kube_api_client`); nothing here
touches the client library's global default configuration, so tests and
several clusters can coexist in one process.

Objects are read as raw JSON (``_preload_content=False``), not as the client's
typed models: the models silently drop fields this client version does not
know, and a rollback that copies a ReplicaSet's pod template through them would
strip those fields from the Deployment.

Errors come back as `ActionError`s written for humans (which RBAC verb is
missing, an expired token, an unreachable API), never with a credential in them;
a 409 is a `Conflict`, which the executors retry (see `bot.actions.kubernetes_base`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from bot.actions.base import ActionError, ActionUnavailable

FIELD_MANAGER = "nexus-incident-bot"  # shows up in managedFields: who changed what

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
            raise ActionUnavailable(f"cannot use kubeconfig {path}: {first_line(exc)}") from None
    configuration = client.Configuration()
    try:
        _load_incluster_config(client_configuration=configuration)
    except Exception as exc:
        raise ActionUnavailable(
            "no Kubernetes credentials: configure a kubeconfig (or set $KUBECONFIG), or run "
            f"the bot in a pod with a service account (in-cluster config: {first_line(exc)})"
        ) from None
    return client.ApiClient(configuration)


class Conflict(ActionError):
    """409: the object changed between our read and our patch."""


class AlreadyExists(Conflict):
    """409 on a create: an object of that name exists (another replica made it first)."""


class NotFound(ActionError):
    """404 on a single object: the message names it; callers may say more."""


@dataclass(frozen=True)
class _Op:
    """One API call, described for error messages."""

    verb: str  # the RBAC verb: get, list, patch
    resource: str  # as RBAC names it: deployments/scale, replicasets, configmaps
    group: str  # API group; "" is core
    namespace: str
    what: str  # "deployment ai/frenly-ai"


class KubeApi:
    """The handful of API calls the executors make, as JSON dicts, with errors for humans."""

    def __init__(self, api_client: client.ApiClient, timeout: float) -> None:
        self._api_client = api_client
        self._apps = client.AppsV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._batch = client.BatchV1Api(api_client)
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

    def cronjob(self, ns: str, name: str) -> dict[str, Any]:
        op = _Op("get", "cronjobs", "batch", ns, f"CronJob {ns}/{name}")
        return self._call(op, self._batch.read_namespaced_cron_job, name, ns)

    def create_job(self, ns: str, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        name = str((body.get("metadata") or {}).get("name") or "")
        op = _Op("create", "jobs", "batch", ns, f"Job {ns}/{name}")
        return self._call(
            op,
            self._post_raw,
            f"/apis/batch/v1/namespaces/{ns}/jobs",
            body,
            dry_run="All" if dry_run else None,
            field_manager=FIELD_MANAGER,
        )

    def job(self, ns: str, name: str) -> dict[str, Any]:
        # The whole Job, not jobs/status: the status is in it, and one RBAC rule
        # ("get jobs") then covers both following a Job and checking whose it is.
        op = _Op("get", "jobs", "batch", ns, f"Job {ns}/{name}")
        return self._call(op, self._batch.read_namespaced_job, name, ns)

    def pods(self, ns: str, selector: str) -> list[dict[str, Any]]:
        op = _Op("list", "pods", "", ns, f"the pods in namespace {ns}")
        answer = self._call(op, self._core.list_namespaced_pod, ns, label_selector=selector)
        return list(answer.get("items") or [])

    def pod_log(self, ns: str, name: str, *, container: str, tail_lines: int) -> str:
        op = _Op("get", "pods/log", "", ns, f"the log of pod {ns}/{name}")
        data = self._send(
            op,
            self._core.read_namespaced_pod_log,
            name,
            ns,
            container=container,
            tail_lines=tail_lines,
        )
        return data.decode("utf-8", errors="replace")

    def _post_raw(
        self,
        path: str,
        body: dict[str, Any],
        *,
        dry_run: str | None,
        field_manager: str,
        _preload_content: bool,
        _request_timeout: float,
    ) -> Any:
        """POST a JSON body as is.

        The generated create methods validate the body into the client's models,
        which forbid fields this client version does not know: a Job copied from a
        newer cluster's CronJob would be refused, or stripped, before it left.
        """
        query = [("fieldManager", field_manager)]
        if dry_run:
            query.append(("dryRun", dry_run))
        api: Any = self._api_client  # its REST layer is untyped
        method, url, headers, data, _ = api.param_serialize(
            method="POST",
            resource_path=path,
            query_params=query,
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = api.call_api(method, url, headers, data, _request_timeout=_request_timeout)
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response

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
        data = self._send(op, method, *args, **kwargs)
        try:
            answer = json.loads(data)
        except ValueError:
            raise ActionError(f"the Kubernetes API answered {op.what} with invalid JSON") from None
        if not isinstance(answer, dict):
            raise ActionError(f"the Kubernetes API answered {op.what} with unexpected JSON")
        return answer

    def _send(self, op: _Op, method: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        """Every call goes through here (JSON or not): the raw answer, or an error for humans."""
        try:
            response = method(
                *args, _preload_content=False, _request_timeout=self._timeout, **kwargs
            )
            return bytes(response.data)
        except ApiException as exc:
            raise self._error(op, exc) from None
        except urllib3.exceptions.HTTPError as exc:
            host = self._api_client.configuration.host
            raise ActionError(
                self._redact(f"cannot reach the Kubernetes API at {host} ({first_line(exc)})")
            ) from None

    def _error(self, op: _Op, exc: ApiException) -> ActionError:
        status = int(exc.status or 0)
        reason, message = str(exc.reason or ""), ""
        try:
            body = json.loads(exc.body or "")
            reason = str(body.get("reason") or reason)
            message = str(body.get("message") or "")
        except (ValueError, AttributeError):
            message = str(exc.body or "")
        said = f"{status} {reason}: {trim(message, 300)}" if message else f"{status} {reason}"
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
            return NotFound(self._redact(f"{op.what} not found"))
        elif status == 409 and reason == "AlreadyExists":
            return AlreadyExists(self._redact(f"{op.what} already exists"))
        elif status == 409:
            return Conflict(self._redact(f"{op.what} changed during the update ({said})"))
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


def trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_line(exc: BaseException) -> str:
    # Only the first line: YAML errors quote the offending line, which may hold a token.
    lines = str(exc).strip().splitlines()
    return trim(lines[0] if lines else type(exc).__name__, 200)
