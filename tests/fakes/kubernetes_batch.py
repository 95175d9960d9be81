"""CronJobs, Jobs, their pods and logs, for `FakeKubernetes` (mixed into it).

What it models, as the API server and the Job controller would:

* CronJobs (GET), seeded with `add_cronjob` and changed with `update_cronjob`;
* Jobs: create (POST; ``dryRun=All`` validated and answered, not stored; an
  existing name gets 409 AlreadyExists with a Status body), GET the Job or its
  ``status`` subresource, list by label selector; the controller's labels
  (``job-name``, ``controller-uid``...) and defaults are added on creation;
* a Job does not run by itself: the test drives it with `start_job` (a running
  pod, optionally with a log so far) and `finish_job` (the pod terminates with
  an exit code and a log; the Job gets its Complete or Failed condition), or
  once for every created Job with `on_job_created` / `auto_finish_jobs`;
* pods: list by label selector (``job-name=NAME``), and ``pods/log`` as plain
  text honouring ``tailLines`` and ``container``.
"""

from __future__ import annotations

import copy
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any

CRONJOB_ROUTES = [
    # (path, resource as RBAC names it, API group), as in kubernetes._ROUTES
    (re.compile(r"/apis/batch/v1/namespaces/([^/]+)/cronjobs/([^/]+)"), "cronjobs", "batch"),
    (re.compile(r"/apis/batch/v1/namespaces/([^/]+)/jobs()"), "jobs", "batch"),
    (re.compile(r"/apis/batch/v1/namespaces/([^/]+)/jobs/([^/]+)"), "jobs", "batch"),
    (re.compile(r"/apis/batch/v1/namespaces/([^/]+)/jobs/([^/]+)/status"), "jobs/status", "batch"),
    (re.compile(r"/api/v1/namespaces/([^/]+)/pods()"), "pods", ""),
    (re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/log"), "pods/log", ""),
]
BATCH_RESOURCES = frozenset(resource for _, resource, _ in CRONJOB_ROUTES)
_JOB_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

JobCallback = Callable[[dict[str, Any]], object]  # what it returns is ignored


def _fail(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> Exception:
    # Imported when needed: tests.fakes.kubernetes imports this module to mix it in.
    from tests.fakes.kubernetes import _Fail

    return _Fail(code, reason, message, details)


class FakeBatch:
    """The batch half of the fake; the host class provides the store's lock and metadata."""

    _lock: threading.RLock

    def _new_meta(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str] | None,
        annotations: dict[str, str] | None,
    ) -> dict[str, Any]:
        raise NotImplementedError

    def _bump(self, obj: dict[str, Any]) -> None:
        raise NotImplementedError

    def _init_batch(self) -> None:
        self._cronjobs: dict[tuple[str, str], dict[str, Any]] = {}
        self._jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}
        self._logs: dict[tuple[str, str, str], str] = {}  # (ns, pod, container) → text
        self._job_created: list[JobCallback] = []

    # -- seeding and inspection ---------------------------------------------------

    def add_cronjob(
        self,
        namespace: str,
        name: str,
        *,
        image: str = "registry.example/job:1.0",
        command: list[str] | None = None,
        args: list[str] | None = None,
        containers: list[dict[str, Any]] | None = None,
        suspend: bool = True,
        schedule: str = "0 3 * * *",
        job_labels: dict[str, str] | None = None,
        job_annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A CronJob whose template runs ``containers`` (default: one named ``name``)."""
        container: dict[str, Any] = {"name": name, "image": image}
        if command is not None:
            container["command"] = list(command)
        if args is not None:
            container["args"] = list(args)
        container.update(imagePullPolicy="IfNotPresent", resources={})
        # The API server answers an empty template metadata with creationTimestamp: null.
        template_meta: dict[str, Any] = {"creationTimestamp": None}
        if job_labels:
            template_meta["labels"] = dict(job_labels)
        if job_annotations:
            template_meta["annotations"] = dict(job_annotations)
        with self._lock:
            cronjob = {
                "kind": "CronJob",
                "apiVersion": "batch/v1",
                "metadata": self._new_meta(namespace, name, {"app": name}, None),
                "spec": {
                    "schedule": schedule,
                    "suspend": suspend,
                    "concurrencyPolicy": "Forbid",
                    "successfulJobsHistoryLimit": 3,
                    "failedJobsHistoryLimit": 1,
                    "jobTemplate": {
                        "metadata": template_meta,
                        "spec": {
                            "backoffLimit": 0,
                            "template": {
                                "metadata": {"creationTimestamp": None, "labels": {"app": name}},
                                "spec": {
                                    "containers": containers or [container],
                                    "restartPolicy": "Never",
                                    "terminationGracePeriodSeconds": 30,
                                },
                            },
                        },
                    },
                },
                "status": {},
            }
            self._cronjobs[(namespace, name)] = cronjob
            return copy.deepcopy(cronjob)

    def update_cronjob(
        self, namespace: str, name: str, change: Callable[[dict[str, Any]], None]
    ) -> None:
        """Change a CronJob behind the bot's back (its resourceVersion moves)."""
        with self._lock:
            cronjob = self._cronjobs[(namespace, name)]
            change(cronjob)
            self._bump(cronjob)

    def cronjob(self, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._cronjobs[(namespace, name)])

    def jobs(self, namespace: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            items = sorted(self._jobs.items())
            return [copy.deepcopy(j) for (ns, _), j in items if namespace in (None, ns)]

    def job(self, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._jobs[(namespace, name)])

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        with self._lock:
            items = sorted(self._pods.items())
            return [copy.deepcopy(p) for (ns, _), p in items if ns == namespace]

    def on_job_created(self, callback: JobCallback) -> None:
        """Call ``callback(job)`` after every Job created for real (not dry runs), in order.

        It runs on the server's thread before the create is answered, so it may
        call `start_job` / `finish_job` for that Job: the creator's first poll
        then sees it.
        """
        with self._lock:
            self._job_created.append(callback)

    def auto_finish_jobs(
        self, *, succeeded: bool = True, exit_code: int | None = None, log: str = ""
    ) -> None:
        """Every Job created from now on finishes at once, with this exit code and log."""

        def finish(job: dict[str, Any]) -> None:
            meta = job["metadata"]
            self.finish_job(
                meta["namespace"], meta["name"], succeeded=succeeded, exit_code=exit_code, log=log
            )

        self.on_job_created(finish)

    def start_job(
        self, namespace: str, name: str, *, log: str = "", container: str | None = None
    ) -> dict[str, Any]:
        """The Job's pod is running and has printed ``log`` so far. Returns the pod."""
        with self._lock:
            job = self._jobs[(namespace, name)]
            pod = self._job_pod(job)
            self._set_log(pod, container, log)
            job["status"].update(active=1, ready=1)
            self._bump(job)
            return copy.deepcopy(pod)

    def finish_job(
        self,
        namespace: str,
        name: str,
        *,
        succeeded: bool = True,
        exit_code: int | None = None,
        log: str | None = None,
        container: str | None = None,
    ) -> dict[str, Any]:
        """The Job's pod exits (default exit code: 0, or 1 if not ``succeeded``).

        ``log`` replaces the pod's log (None keeps what `start_job` set). The
        Job's conditions are those of Kubernetes ≥ 1.31: SuccessCriteriaMet then
        Complete, or FailureTarget then Failed (BackoffLimitExceeded).
        """
        code = exit_code if exit_code is not None else (0 if succeeded else 1)
        with self._lock:
            job = self._jobs[(namespace, name)]
            pod = self._job_pod(job)
            if log is not None:
                self._set_log(pod, container, log)
            statuses = []
            for c in pod["spec"]["containers"]:
                terminated = {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": pod["metadata"]["creationTimestamp"],
                    "finishedAt": pod["metadata"]["creationTimestamp"],
                }
                statuses.append(
                    {"name": c["name"], "image": c["image"], "ready": False, "restartCount": 0}
                    | {"state": {"terminated": terminated}}
                )
            pod["status"] = {
                "phase": "Succeeded" if succeeded else "Failed",
                "containerStatuses": statuses,
            }
            self._bump(pod)
            status = job["status"]
            status.pop("active", None)
            status["ready"] = 0
            started = status.setdefault("startTime", job["metadata"]["creationTimestamp"])
            if succeeded:
                status.update(succeeded=1, completionTime=started)
                kinds = [("SuccessCriteriaMet", "CompletionsReached"), ("Complete", "")]
            else:
                status["failed"] = 1
                reason = "BackoffLimitExceeded"
                kinds = [("FailureTarget", reason), ("Failed", reason)]
            status["conditions"] = [
                {
                    "type": kind,
                    "status": "True",
                    "reason": reason,
                    "message": "Job has reached the specified backoff limit" if reason else "",
                    "lastProbeTime": started,
                    "lastTransitionTime": started,
                }
                for kind, reason in kinds
            ]
            self._bump(job)
            return copy.deepcopy(job)

    # -- serving (server thread, under the lock) --------------------------------------

    def _serve_batch(self, request: Any, verb: str, ref: Any) -> dict[str, Any] | str:
        ns = ref.namespace
        if ref.resource == "cronjobs":
            return copy.deepcopy(self._get(self._cronjobs, ref))
        if ref.resource in ("jobs", "jobs/status") and verb == "get":
            return copy.deepcopy(self._get(self._jobs, ref))
        if ref.resource == "jobs" and verb == "create":
            return self._create_job(ns, request.body, request.dry_run)
        if ref.resource == "jobs" and verb == "list":
            return self._list("JobList", "batch/v1", self._jobs, ns, request.query)
        if ref.resource == "pods":
            return self._list("PodList", "v1", self._pods, ns, request.query)
        if ref.resource == "pods/log":
            return self._log(self._get(self._pods, ref), request.query)
        raise _fail(405, "MethodNotAllowed", f"the server does not allow {verb} here")

    def _get(self, store: dict[tuple[str, str], dict[str, Any]], ref: Any) -> dict[str, Any]:
        obj = store.get((ref.namespace, ref.name))
        if obj is None:
            kind = ref.resource.split("/")[0]
            raise _fail(
                404,
                "NotFound",
                f'{ref.qualified} "{ref.name}" not found',
                {"name": ref.name, "group": ref.group, "kind": kind},
            )
        return obj

    def _list(
        self,
        kind: str,
        api_version: str,
        store: dict[tuple[str, str], dict[str, Any]],
        namespace: str,
        query: dict[str, str],
    ) -> dict[str, Any]:
        from tests.fakes.kubernetes import _selector  # the one selector parser

        matches = _selector(query.get("labelSelector", ""))
        items = [
            copy.deepcopy(obj)
            for (ns, _), obj in sorted(store.items())
            if ns == namespace and matches(obj["metadata"].get("labels") or {})
        ]
        return {"kind": kind, "apiVersion": api_version, "metadata": {}, "items": items}

    def _create_job(self, namespace: str, body: Any, dry_run: bool) -> dict[str, Any]:
        job = copy.deepcopy(body) if isinstance(body, dict) else {}
        meta = job.get("metadata") or {}
        name = str(meta.get("name") or "")
        self._validate_job(namespace, name, job)
        if (namespace, name) in self._jobs:
            raise _fail(
                409,
                "AlreadyExists",
                f'jobs.batch "{name}" already exists',
                {"name": name, "group": "batch", "kind": "jobs"},
            )
        stored_meta = self._new_meta(namespace, name, meta.get("labels"), meta.get("annotations"))
        if meta.get("ownerReferences"):
            stored_meta["ownerReferences"] = copy.deepcopy(meta["ownerReferences"])
        uid = stored_meta["uid"]
        # What the Job controller's defaulting adds: the selector and pod labels by uid.
        controller = {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
        stored_meta.setdefault("labels", {}).update(
            {k: v for k, v in controller.items() if k.endswith("job-name")}
        )
        spec = job.get("spec") or {}
        spec.setdefault("parallelism", 1)
        spec.setdefault("completions", 1)
        spec.setdefault("backoffLimit", 6)
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(controller)
        created = {
            "kind": "Job",
            "apiVersion": "batch/v1",
            "metadata": stored_meta,
            "spec": spec,
            "status": {},
        }
        if dry_run:
            return created
        self._jobs[(namespace, name)] = created
        answer = copy.deepcopy(created)
        for callback in list(self._job_created):
            callback(copy.deepcopy(created))
        return answer

    def _validate_job(self, namespace: str, name: str, job: dict[str, Any]) -> None:
        from tests.fakes.kubernetes import _invalid

        # The Job controller puts the name in a label value: 63 characters at most.
        if len(name) > 63 or not _JOB_NAME.fullmatch(name):
            raise _invalid("Job.batch", name, "metadata.name", name)
        if (job.get("metadata") or {}).get("namespace") not in (None, namespace):
            raise _fail(400, "BadRequest", "the namespace of the object does not match")
        pod_spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
        containers = pod_spec.get("containers")
        if not containers or any(not c.get("name") or not c.get("image") for c in containers):
            raise _invalid("Job.batch", name, "spec.template.spec.containers", containers)
        if pod_spec.get("restartPolicy") not in ("Never", "OnFailure"):
            raise _invalid(
                "Job.batch", name, "spec.template.spec.restartPolicy", pod_spec.get("restartPolicy")
            )

    def _job_pod(self, job: dict[str, Any]) -> dict[str, Any]:
        """The Job's pod (made on first use), labelled as the Job controller labels it."""
        meta = job["metadata"]
        namespace = meta["namespace"]
        for pod in self._pods.values():
            if (pod["metadata"].get("labels") or {}).get("controller-uid") == meta["uid"]:
                return pod
        suffix = "".join(_SUFFIX_ALPHABET[b % len(_SUFFIX_ALPHABET)] for b in uuid.uuid4().bytes)
        template = job["spec"]["template"]
        pod_name = f"{meta['name']}-{suffix[:5]}"
        pod_meta = self._new_meta(namespace, pod_name, template["metadata"]["labels"], None)
        pod_meta["ownerReferences"] = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        running = {"startedAt": meta["creationTimestamp"]}
        pod = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": pod_meta,
            "spec": copy.deepcopy(template["spec"]),
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {"name": c["name"], "image": c["image"], "ready": True, "restartCount": 0}
                    | {"state": {"running": running}}
                    for c in template["spec"]["containers"]
                ],
            },
        }
        self._pods[(namespace, pod_name)] = pod
        return pod

    def _set_log(self, pod: dict[str, Any], container: str | None, log: str) -> None:
        meta = pod["metadata"]
        name = container or pod["spec"]["containers"][0]["name"]
        self._logs[(meta["namespace"], meta["name"], name)] = log

    def _log(self, pod: dict[str, Any], query: dict[str, str]) -> str:
        meta = pod["metadata"]
        names = [c["name"] for c in pod["spec"]["containers"]]
        container = query.get("container")
        if container is None and len(names) > 1:
            raise _fail(
                400,
                "BadRequest",
                f"a container name must be specified for pod {meta['name']}, "
                f"choose one of: [{' '.join(names)}]",
            )
        container = container or names[0]
        if container not in names:
            raise _fail(
                400,
                "BadRequest",
                f"container {container} is not valid for pod {meta['name']}",
            )
        lines = self._logs.get((meta["namespace"], meta["name"], container), "").splitlines(
            keepends=True
        )
        tail = query.get("tailLines")
        if tail is not None:
            lines = lines[-int(tail) :] if int(tail) > 0 else []
        return "".join(lines)
