"""A fake Kubernetes API server: plain HTTP on 127.0.0.1, for the k8s executors' tests.

It serves just what bot/actions/kubernetes.py uses, with JSON shaped like the
real API server's (the official client deserializes it), so tests run the real
client over a real socket::

    with FakeKubernetes() as kube:
        kube.add_deployment("ai", "frenly-ai", replicas=3, image="frenly:1.0")
        write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token)
        ...
        assert kube.deployment("ai", "frenly-ai")["spec"]["replicas"] == 0

What it models:

* Deployments (GET/PATCH, and the ``scale`` subresource), ReplicaSets (list with
  a label selector), ConfigMaps (GET/PATCH);
* CronJobs, Jobs (create, with 409 AlreadyExists), their pods and logs, and Jobs
  finished on the test's word (see `tests.fakes.kubernetes_batch`);
* patches: strategic merge (a plain recursive merge; lists are replaced, which
  is all our patches need), JSON merge, and JSON patch (add/replace/remove/test);
* ``dryRun=All``: validated and answered, nothing stored;
* optimistic concurrency: a patch that sets ``metadata.resourceVersion`` to a
  stale value gets 409 Conflict, as the real server does;
* ``resourceVersion`` bumps on every change, ``generation`` on spec changes;
* a deployment controller that converges instantly: a pod-template change makes
  a new ReplicaSet with the next revision, or re-uses the ReplicaSet whose
  template matches (a rollback), moving its old revision to revision-history;
  paused deployments do not roll;
* the bearer token (401 without it), RBAC denials on demand (`forbid`) and
  changes made "behind the bot's back" at a precise moment (`before_next`);
* every request is recorded (`requests`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.fakes.background import ThreadedHTTPServer
from tests.fakes.kubernetes_batch import BATCH_RESOURCES, CRONJOB_ROUTES, FakeBatch

DEFAULT_TOKEN = "fake-k8s-token-4f9c2e7a1b"
DEFAULT_USER = "system:serviceaccount:nexus:nexus-bot"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
HASH_LABEL = "pod-template-hash"
# Annotations the deployment controller never copies between Deployment and ReplicaSet.
_SKIP_COPY = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
}
_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

_ROUTES: list[tuple[re.Pattern[str], str, str]] = [
    # (path, resource as RBAC names it, API group)
    (re.compile(r"/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)"), "deployments", "apps"),
    (
        re.compile(r"/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)/scale"),
        "deployments/scale",
        "apps",
    ),
    (re.compile(r"/apis/apps/v1/namespaces/([^/]+)/replicasets()"), "replicasets", "apps"),
    (re.compile(r"/api/v1/namespaces/([^/]+)/configmaps/([^/]+)"), "configmaps", ""),
    *CRONJOB_ROUTES,
]


@dataclass
class FakeRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON, or None
    status: int = 0

    @property
    def dry_run(self) -> bool:
        return self.query.get("dryRun") == "All"

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


@dataclass
class _Hook:
    verb: str
    resource: str
    action: Callable[[], None]
    include_dry_run: bool


class _Fail(Exception):
    """Answer with a Kubernetes Status object."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


@dataclass
class _Ref:
    namespace: str
    name: str
    resource: str
    group: str

    @property
    def qualified(self) -> str:  # "deployments.apps", as the server names it in messages
        base = self.resource.split("/")[0]
        return f"{base}.{self.group}" if self.group else base


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_kubeconfig(path: str | Path, url: str, token: str | None = DEFAULT_TOKEN) -> Path:
    """A kubeconfig pointing at ``url``; ``token=None`` writes a user without credentials."""
    user: dict[str, Any] = {"token": token} if token is not None else {}
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "bot", "user": user}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "bot"}}],
        "current-context": "fake",
    }
    target = Path(path)
    target.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return target


class FakeKubernetes(FakeBatch, ThreadedHTTPServer):
    thread_name = "fake-k8s"
    # A short poll interval: stop() waits for it, once per test.
    poll_interval = 0.02

    def __init__(self, *, token: str = DEFAULT_TOKEN, user: str = DEFAULT_USER) -> None:
        super().__init__()
        self.token = token
        self.user = user
        self._lock = threading.RLock()
        self._deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self._replicasets: dict[tuple[str, str], dict[str, Any]] = {}
        self._configmaps: dict[tuple[str, str], dict[str, Any]] = {}
        self._forbidden: set[tuple[str, str, str | None]] = set()
        self._hooks: list[_Hook] = []
        self._requests: list[FakeRequest] = []
        self._rv = 1000
        self._init_batch()

    # -- lifecycle ---------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        return Handler

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._address[1]}"

    def write_kubeconfig(self, path: str | Path, *, with_token: bool = True) -> Path:
        return write_kubeconfig(path, self.url, self.token if with_token else None)

    # -- seeding and inspection ---------------------------------------------------

    def add_deployment(
        self,
        namespace: str,
        name: str,
        *,
        replicas: int = 3,
        image: str = "registry.example/app:1.0",
        containers: list[dict[str, Any]] | None = None,
        paused: bool = False,
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A deployment at revision 1, with its ReplicaSet, fully rolled out.

        ``labels`` (default ``{"app": name}``) are its selector and pod labels.
        """
        labels = dict(labels or {"app": name})
        spec: dict[str, Any] = {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": containers or [_container(name, image)],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst",
                    "securityContext": {},
                    "schedulerName": "default-scheduler",
                },
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        }
        if paused:
            spec["paused"] = True
        with self._lock:
            deployment = {
                "kind": "Deployment",
                "apiVersion": "apps/v1",
                "metadata": self._new_meta(namespace, name, labels, annotations),
                "spec": spec,
                "status": {},
            }
            self._deployments[(namespace, name)] = deployment
            self._sync(deployment, force=True)
            return copy.deepcopy(deployment)

    def set_image(self, namespace: str, name: str, image: str, container: int = 0) -> None:
        """A new rollout, as a CD pipeline would make it."""
        self.update_deployment(
            namespace,
            name,
            lambda d: d["spec"]["template"]["spec"]["containers"][container].update(image=image),
        )

    def update_deployment(
        self, namespace: str, name: str, change: Callable[[dict[str, Any]], None]
    ) -> None:
        """Change a deployment behind the bot's back (the controller reacts)."""
        with self._lock:
            current = self._deployments[(namespace, name)]
            updated = copy.deepcopy(current)
            change(updated)
            self._store_deployment(current, updated)

    def add_configmap(self, namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            cm = {
                "kind": "ConfigMap",
                "apiVersion": "v1",
                "metadata": self._new_meta(namespace, name, None, None),
                "data": dict(data),
            }
            self._configmaps[(namespace, name)] = cm
            return copy.deepcopy(cm)

    def set_configmap_data(self, namespace: str, name: str, data: dict[str, str]) -> None:
        with self._lock:
            cm = self._configmaps[(namespace, name)]
            cm.setdefault("data", {}).update(data)
            self._bump(cm)

    def touch(self, namespace: str, name: str) -> None:
        """Bump a deployment's resourceVersion only, as a controller status update does."""
        with self._lock:
            self._bump(self._deployments[(namespace, name)])

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._deployments[(namespace, name)])

    def replicasets(self, namespace: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                copy.deepcopy(rs) for (ns, _), rs in self._replicasets.items() if ns == namespace
            ]

    def configmap(self, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._configmaps[(namespace, name)])

    def forbid(self, verb: str, resource: str, namespace: str | None = None) -> None:
        """RBAC: deny ``verb`` (get/list/patch) on ``resource`` (e.g. "deployments/scale")."""
        with self._lock:
            self._forbidden.add((verb, resource, namespace))

    def before_next(
        self,
        verb: str,
        resource: str,
        action: Callable[[], None],
        *,
        include_dry_run: bool = False,
    ) -> None:
        """Run ``action`` once, just before the next matching request is served."""
        with self._lock:
            self._hooks.append(_Hook(verb, resource, action, include_dry_run))

    @property
    def requests(self) -> list[FakeRequest]:
        with self._lock:
            return list(self._requests)

    def patches(self, *, dry_run: bool | None = None) -> list[FakeRequest]:
        return [
            r
            for r in self.requests
            if r.method == "PATCH" and (dry_run is None or r.dry_run == dry_run)
        ]

    def creates(self, *, dry_run: bool | None = None) -> list[FakeRequest]:
        """The POSTs (Job creations), answered or refused, in order."""
        return [
            r
            for r in self.requests
            if r.method == "POST" and (dry_run is None or r.dry_run == dry_run)
        ]

    # -- request handling (server thread) -------------------------------------------

    def _handle(self, request: FakeRequest) -> tuple[int, dict[str, Any] | str]:
        with self._lock:
            self._requests.append(request)
        try:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                raise _Fail(401, "Unauthorized", "Unauthorized")
            ref, single = self._route(request.path)
            verbs = {"GET": "get" if single else "list", "PATCH": "patch", "POST": "create"}
            verb = verbs.get(request.method)
            if verb is None or (verb == "create" and single):
                raise _Fail(405, "MethodNotAllowed", "the server does not allow this method")
            self._authorize(verb, ref)
            self._run_hooks(verb, ref.resource, request.dry_run)
            with self._lock:
                if ref.resource in BATCH_RESOURCES:
                    return 201 if verb == "create" else 200, self._serve_batch(request, verb, ref)
                return 200, self._serve(request, verb, ref)
        except _Fail as fail:
            status: dict[str, Any] = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": fail.message,
                "reason": fail.reason,
                "code": fail.code,
            }
            if fail.details is not None:
                status["details"] = fail.details
            return fail.code, status

    def _route(self, path: str) -> tuple[_Ref, bool]:
        for pattern, resource, group in _ROUTES:
            match = pattern.fullmatch(path)
            if match:
                return _Ref(match[1], match[2], resource, group), bool(match[2])
        raise _Fail(404, "NotFound", "the server could not find the requested resource")

    def _authorize(self, verb: str, ref: _Ref) -> None:
        with self._lock:
            denied = {(verb, ref.resource, None), (verb, ref.resource, ref.namespace)}
            if not denied & self._forbidden:
                return
        subject = f'{ref.qualified} "{ref.name}"' if ref.name else ref.qualified
        raise _Fail(
            403,
            "Forbidden",
            f'{subject} is forbidden: User "{self.user}" cannot {verb} resource '
            f'"{ref.resource}" in API group "{ref.group}" in the namespace "{ref.namespace}"',
            {"name": ref.name, "group": ref.group, "kind": ref.resource.split("/")[0]},
        )

    def _run_hooks(self, verb: str, resource: str, dry_run: bool) -> None:
        with self._lock:
            hook = next(
                (
                    h
                    for h in self._hooks
                    if h.verb == verb
                    and h.resource == resource
                    and (h.include_dry_run or not dry_run)
                ),
                None,
            )
            if hook is not None:
                self._hooks.remove(hook)
        if hook is not None:
            hook.action()

    def _serve(self, request: FakeRequest, verb: str, ref: _Ref) -> dict[str, Any]:
        key = (ref.namespace, ref.name)
        if ref.resource == "replicasets":
            matches = _selector(request.query.get("labelSelector", ""))
            items = [
                copy.deepcopy(rs)
                for (ns, _), rs in sorted(self._replicasets.items())
                if ns == ref.namespace and matches(rs["metadata"].get("labels") or {})
            ]
            return {
                "kind": "ReplicaSetList",
                "apiVersion": "apps/v1",
                "metadata": {"resourceVersion": str(self._rv)},
                "items": items,
            }
        store = self._configmaps if ref.resource == "configmaps" else self._deployments
        if key not in store:
            raise _Fail(
                404,
                "NotFound",
                f'{ref.qualified} "{ref.name}" not found',
                {"name": ref.name, "group": ref.group, "kind": ref.resource.split("/")[0]},
            )
        current = store[key]
        view = _scale_of(current) if ref.resource == "deployments/scale" else current
        if verb == "get":
            return copy.deepcopy(view)
        patched = _apply_patch(view, request.body, request.content_type)
        sent_rv = patched["metadata"].get("resourceVersion")
        if sent_rv != current["metadata"]["resourceVersion"]:
            raise _Fail(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {ref.qualified} "{ref.name}": the object has '
                "been modified; please apply your changes to the latest version and try again",
                {"name": ref.name, "group": ref.group, "kind": ref.resource.split("/")[0]},
            )
        if ref.resource == "deployments/scale":
            replicas = patched.get("spec", {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise _invalid("Scale", ref.name, "spec.replicas", replicas)
            updated = copy.deepcopy(current)
            updated["spec"]["replicas"] = replicas
        else:
            updated = patched
        if ref.resource == "configmaps":
            _validate_configmap(updated, ref.name)
            if request.dry_run:
                return updated
            if updated != current:
                self._bump(updated)
            store[key] = updated
            return copy.deepcopy(updated)
        _validate_deployment(updated, ref.name)
        if request.dry_run:
            if updated["spec"] != current["spec"]:
                updated["metadata"]["generation"] = current["metadata"]["generation"] + 1
            return _scale_of(updated) if ref.resource == "deployments/scale" else updated
        stored = self._store_deployment(current, updated)
        return _scale_of(stored) if ref.resource == "deployments/scale" else copy.deepcopy(stored)

    # -- the "controller" -------------------------------------------------------------

    def _store_deployment(self, current: dict[str, Any], updated: dict[str, Any]) -> dict[str, Any]:
        if updated["spec"] != current["spec"]:
            updated["metadata"]["generation"] = current["metadata"]["generation"] + 1
        key = (current["metadata"]["namespace"], current["metadata"]["name"])
        if updated != current:
            self._deployments[key] = updated
            self._sync(updated)
            self._bump(updated)
        return self._deployments[key]

    def _sync(self, deployment: dict[str, Any], force: bool = False) -> None:
        """Instantly converge: the ReplicaSet of the current template, next revision on change."""
        meta, spec = deployment["metadata"], deployment["spec"]
        owned = self._owned(deployment)
        template = spec["template"]
        active = next((rs for rs in owned if _same_template(rs, template)), None)
        if spec.get("paused") and not force:
            # A paused deployment does not roll: the running ReplicaSet stays the active one.
            running = (meta.get("annotations") or {}).get(REVISION)
            active = next((rs for rs in owned if str(_revision(rs)) == running), None)
        else:
            newest = max((_revision(rs) for rs in owned), default=0)
            if active is None:
                active = self._new_replicaset(deployment, newest + 1)
            elif _revision(active) != newest:
                # A rollback: the old ReplicaSet becomes the newest revision again.
                old = str(_revision(active))
                annotations = active["metadata"]["annotations"]
                history = [h for h in annotations.get(REVISION_HISTORY, "").split(",") if h]
                annotations[REVISION_HISTORY] = ",".join([*history, old])
                annotations[REVISION] = str(newest + 1)
                self._bump(active)
            meta.setdefault("annotations", {})[REVISION] = active["metadata"]["annotations"][
                REVISION
            ]
        replicas = spec["replicas"]
        for rs in self._owned(deployment):
            want = replicas if active is not None and rs is active else 0
            if rs["spec"]["replicas"] != want:
                rs["spec"]["replicas"] = want
                rs["status"] = _rs_status(want, rs["metadata"]["generation"])
                self._bump(rs)
        deployment["status"] = {
            "observedGeneration": meta["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "lastUpdateTime": _now(),
                    "lastTransitionTime": _now(),
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                }
            ],
        }
        if not replicas:  # the real API omits zero counts
            for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"):
                deployment["status"].pop(k)

    def _owned(self, deployment: dict[str, Any]) -> list[dict[str, Any]]:
        uid = deployment["metadata"]["uid"]
        return [
            rs
            for rs in self._replicasets.values()
            if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences", []))
        ]

    def _new_replicaset(self, deployment: dict[str, Any], revision: int) -> dict[str, Any]:
        meta, spec = deployment["metadata"], deployment["spec"]
        pod_hash = _template_hash(spec["template"])
        template = copy.deepcopy(spec["template"])
        template["metadata"].setdefault("labels", {})[HASH_LABEL] = pod_hash
        annotations = {
            k: v for k, v in (meta.get("annotations") or {}).items() if k not in _SKIP_COPY
        }
        annotations[REVISION] = str(revision)
        annotations["deployment.kubernetes.io/desired-replicas"] = str(spec["replicas"])
        name = f"{meta['name']}-{pod_hash}"
        rs_meta = self._new_meta(meta["namespace"], name, template["metadata"]["labels"], None)
        rs_meta["annotations"] = annotations
        rs_meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        selector = copy.deepcopy(spec["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        rs = {
            "kind": "ReplicaSet",
            "apiVersion": "apps/v1",
            "metadata": rs_meta,
            "spec": {"replicas": 0, "selector": selector, "template": template},
            "status": _rs_status(0, 1),
        }
        self._replicasets[(meta["namespace"], name)] = rs
        return rs

    def _new_meta(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str] | None,
        annotations: dict[str, str] | None,
    ) -> dict[str, Any]:
        self._rv += 1
        meta: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "resourceVersion": str(self._rv),
            "generation": 1,
            "creationTimestamp": _now(),
        }
        if labels:
            meta["labels"] = dict(labels)
        if annotations:
            meta["annotations"] = dict(annotations)
        return meta

    def _bump(self, obj: dict[str, Any]) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeKubernetes
    protocol_version = "HTTP/1.1"
    # Headers and body go out in one segment: no Nagle / delayed-ACK 40 ms stall per request.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._answer()

    def do_PATCH(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = FakeRequest(
            method=self.command,
            path=url.path,
            query={k: v[-1] for k, v in parse_qs(url.query).items()},
            headers={k.title(): v for k, v in self.headers.items()},  # case-insensitive
            body=None,
        )
        try:
            request.body = json.loads(raw) if raw else None
            status, answer = self.server_fake._handle(request)
        except json.JSONDecodeError as exc:
            status, answer = 400, {"kind": "Status", "code": 400, "message": str(exc)}
        request.status = status
        # pods/log answers plain text; everything else is JSON.
        text = isinstance(answer, str)
        data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if text else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


# -- patches, selectors, validation ------------------------------------------------------


def _apply_patch(obj: dict[str, Any], body: Any, content_type: str) -> dict[str, Any]:
    kind = content_type.split(";")[0].strip()
    if kind in ("application/strategic-merge-patch+json", "application/merge-patch+json"):
        if not isinstance(body, dict):
            raise _Fail(400, "BadRequest", "the patch is not a JSON object")
        return _merge(obj, body)
    if kind == "application/json-patch+json":
        if not isinstance(body, list):
            raise _Fail(400, "BadRequest", "a JSON patch must be a list of operations")
        result = copy.deepcopy(obj)
        for op in body:
            result = _json_patch_op(result, op)
        return result
    raise _Fail(415, "UnsupportedMediaType", "the body of the request was in an unknown format")


def _merge(base: Any, patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            out[key] = _merge(out.get(key), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _json_patch_op(doc: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    path = op.get("path", "")
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
    if not parts:
        raise _Fail(422, "Invalid", f"invalid JSON patch path {path!r}")
    parent: Any = doc
    for part in parts[:-1]:
        try:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        except (KeyError, IndexError, ValueError):
            raise _Fail(422, "Invalid", f"doc is missing path: {path}") from None
    last, name = parts[-1], op.get("op")
    if isinstance(parent, list):
        raise _Fail(422, "Invalid", "the fake supports JSON patch on object members only")
    if name == "test":
        if parent.get(last) != op.get("value"):
            raise _Fail(422, "Invalid", f"testing value {path} failed: test failed")
    elif name in ("add", "replace"):
        if name == "replace" and last not in parent:
            raise _Fail(
                422, "Invalid", f"replace operation does not apply: doc is missing key: {path}"
            )
        parent[last] = copy.deepcopy(op.get("value"))
    elif name == "remove":
        if last not in parent:
            raise _Fail(
                422, "Invalid", f"remove operation does not apply: doc is missing key: {path}"
            )
        del parent[last]
    else:
        raise _Fail(422, "Invalid", f"unsupported JSON patch operation {name!r}")
    return doc


def _selector(text: str) -> Callable[[dict[str, str]], bool]:
    """Kubernetes label selector syntax: =, ==, !=, in, notin, exists, !exists."""
    terms: list[tuple[str, str, set[str]]] = []  # (key, operator, values)
    for term in (t.strip() for t in re.findall(r"[^,(]+(?:\([^)]*\))?", text)):
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
            terms.append((m[1], m[2], {v.strip() for v in m[3].split(",")}))
        elif m := re.fullmatch(r"([^!=\s]+)\s*(==|=|!=)\s*(\S*)", term):
            terms.append((m[1], "notin" if m[2] == "!=" else "in", {m[3]}))
        elif term.startswith("!"):
            terms.append((term[1:].strip(), "absent", set()))
        elif term:
            terms.append((term, "exists", set()))

    def matches(labels: dict[str, str]) -> bool:
        for key, op, values in terms:
            ok = {
                "in": key in labels and labels[key] in values,
                "notin": labels.get(key) not in values,
                "absent": key not in labels,
                "exists": key in labels,
            }[op]
            if not ok:
                return False
        return True

    return matches


def _invalid(kind: str, name: str, field_path: str, value: Any) -> _Fail:
    return _Fail(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {field_path}: Invalid value: {json.dumps(value)}',
        {
            "name": name,
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "field": field_path}],
        },
    )


def _validate_deployment(d: dict[str, Any], name: str) -> None:
    spec = d.get("spec") or {}
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise _invalid("Deployment.apps", name, "spec.replicas", replicas)
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    wanted = (spec.get("selector") or {}).get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in wanted.items()):
        raise _invalid("Deployment.apps", name, "spec.template.metadata.labels", labels)
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers")
    if not containers or any(not c.get("name") or not c.get("image") for c in containers):
        raise _invalid("Deployment.apps", name, "spec.template.spec.containers", containers)
    if d["metadata"].get("name") != name:
        raise _invalid("Deployment.apps", name, "metadata.name", d["metadata"].get("name"))


def _validate_configmap(cm: dict[str, Any], name: str) -> None:
    data = cm.get("data") or {}
    if not isinstance(data, dict) or any(not isinstance(v, str) for v in data.values()):
        raise _invalid("ConfigMap", name, "data", data)


def _container(name: str, image: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }


def _scale_of(deployment: dict[str, Any]) -> dict[str, Any]:
    meta = deployment["metadata"]
    labels = deployment["spec"]["selector"].get("matchLabels") or {}
    status = {  # Scale's status.replicas is required (no omitempty), unlike Deployment's
        "replicas": deployment["status"].get("replicas", 0),
        "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
    }
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
        },
        "spec": {"replicas": deployment["spec"]["replicas"]},
        "status": status,
    }


def _rs_status(replicas: int, generation: int) -> dict[str, Any]:
    status: dict[str, Any] = {"replicas": replicas, "observedGeneration": generation}
    if replicas:
        status.update(
            fullyLabeledReplicas=replicas, readyReplicas=replicas, availableReplicas=replicas
        )
    return status


def _revision(rs: dict[str, Any]) -> int:
    return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))


def _same_template(rs: dict[str, Any], template: dict[str, Any]) -> bool:
    theirs = copy.deepcopy(rs["spec"]["template"])
    (theirs["metadata"].get("labels") or {}).pop(HASH_LABEL, None)
    return bool(theirs == template)


def _template_hash(template: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_HASH_ALPHABET[b % len(_HASH_ALPHABET)] for b in digest[:10])


def running_fake_kubernetes(**kwargs: Any) -> Iterator[FakeKubernetes]:
    """For a pytest fixture: ``yield from running_fake_kubernetes()``."""
    with FakeKubernetes(**kwargs) as fake:
        yield fake


__all__ = [
    "DEFAULT_TOKEN",
    "FakeKubernetes",
    "FakeRequest",
    "running_fake_kubernetes",
    "write_kubeconfig",
]
