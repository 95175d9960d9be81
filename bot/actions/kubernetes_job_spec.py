"""k8s.run_job's pure part: the Job's name, its body as kubectl builds it, what it shows.

``kubectl create job NAME --from=cronjob/CJ`` copies ``spec.jobTemplate`` (its
labels, annotations and spec), adds the annotation
``cronjob.kubernetes.io/instantiate: manual`` and makes the CronJob the Job's
controlling owner. The bot does the same, sets the chosen container's args when
the step gives some, and labels the Job with the request it runs for.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from bot.actions.base import ActionError, ExecutionContext
from bot.actions.catalog import RunJob

REQUEST_LABEL = "nexus.bot/request"
INSTANTIATE = "cronjob.kubernetes.io/instantiate"
PREVIEW_KEY = "preview"
# The Job controller copies the Job's name into a label value: 63 characters at most.
_MAX_NAME = 63


@dataclass(frozen=True)
class Rendered:
    """The container the Job runs, as the approver sees it."""

    container: str
    image: str
    command: list[str] | None  # None: the image's entrypoint
    args: list[str] | None  # None: the image's default (or none, with a command)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def request_key(params: RunJob, context: ExecutionContext) -> str:
    """What names this request's Job, the same on every replica that executes it."""
    if context.request_id is not None:
        return str(context.request_id)
    # No request id (an older caller): the incident and a digest of the step, so
    # two replicas executing the same approval still agree on one name.
    step = [
        context.incident_number,
        context.requested_by,
        params.namespace,
        params.cronjob,
        params.container,
        params.args,
    ]
    digest = hashlib.sha256(json.dumps(step).encode()).hexdigest()[:8]
    return f"i{context.incident_number}-{digest}"


def job_name(cronjob: str, key: str) -> str:
    """``<cronjob[:40]>-nexus-<key>``: a valid Job name, shortened to fit 63 characters."""
    suffix = f"-nexus-{key}"
    prefix = cronjob[: max(1, min(40, _MAX_NAME - len(suffix)))]
    # A cut may end on "-" or "."; "x.-nexus" is not a DNS name.
    return f"{prefix.rstrip('-.') or 'job'}{suffix}"[:_MAX_NAME]


def job_template(cronjob: dict[str, Any]) -> dict[str, Any]:
    template = (cronjob.get("spec") or {}).get("jobTemplate")
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
        what = _what(cronjob)
        raise ActionError(f"{what} has no job template (spec.jobTemplate.spec)")
    return template


def template_digest(cronjob: dict[str, Any]) -> str:
    """A digest of everything the Job is made from: any change to it refuses the execution."""
    canonical = json.dumps(job_template(cronjob), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def render(cronjob: dict[str, Any], params: RunJob) -> Rendered:
    container = _container(job_template(cronjob)["spec"], params, _what(cronjob))
    args = params.args if params.args is not None else container.get("args")
    command = container.get("command")
    return Rendered(
        container=str(container.get("name") or ""),
        image=str(container.get("image") or ""),
        command=[str(c) for c in command] if isinstance(command, list) else None,
        args=[str(a) for a in args] if isinstance(args, list) else None,
    )


def job_body(cronjob: dict[str, Any], params: RunJob, name: str, key: str) -> dict[str, Any]:
    """The Job kubectl would create from the CronJob, with the step's args and our label."""
    template = copy.deepcopy(job_template(cronjob))
    meta = cronjob.get("metadata") or {}
    template_meta = template.get("metadata") or {}
    labels = dict(template_meta.get("labels") or {})
    labels[REQUEST_LABEL] = key
    annotations = dict(template_meta.get("annotations") or {})
    annotations[INSTANTIATE] = "manual"
    spec = template["spec"]
    if params.args is not None:
        _container(spec, params, _what(cronjob))["args"] = list(params.args)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": params.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": meta.get("name"),
                    "uid": meta.get("uid"),
                    "controller": True,
                }
            ],
        },
        "spec": spec,
    }


def is_ours(job: dict[str, Any], cronjob: dict[str, Any], key: str) -> bool:
    """Made by the bot for this request, from this very CronJob (not a namesake)."""
    meta = job.get("metadata") or {}
    uid = (cronjob.get("metadata") or {}).get("uid")
    owned = any(
        o.get("kind") == "CronJob" and o.get("uid") == uid
        for o in meta.get("ownerReferences") or []
    )
    return owned and (meta.get("labels") or {}).get(REQUEST_LABEL) == key


def outcome(job: dict[str, Any]) -> tuple[str, str] | None:
    """("Complete" or "Failed", what Kubernetes said) once the Job has finished, else None."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            said = ": ".join(str(condition[k]) for k in ("reason", "message") if condition.get(k))
            return str(condition["type"]), said
    return None


def words(values: list[str] | None, default: str) -> str:
    return f"[{' '.join(values)}]" if values is not None else default


def _container(spec: dict[str, Any], params: RunJob, what: str) -> dict[str, Any]:
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    containers = [c for c in pod_spec.get("containers") or [] if isinstance(c, dict)]
    if not containers:
        raise ActionError(f"{what}'s job template has no container")
    if params.container is None:
        return containers[0]
    for container in containers:
        if container.get("name") == params.container:
            return container
    names = ", ".join(str(c.get("name")) for c in containers)
    raise ActionError(f"{what} has no container named {params.container} (it has: {names})")


def _what(cronjob: dict[str, Any]) -> str:
    meta = cronjob.get("metadata") or {}
    return f"CronJob {meta.get('namespace')}/{meta.get('name')}"
