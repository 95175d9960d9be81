"""k8s.run_job: run a Job from a CronJob once per request, wait for it, report its log.

The preview reads the CronJob, builds the Job exactly as ``kubectl create job
--from=cronjob/NAME`` would (see `bot.actions.kubernetes_job_spec`) and creates
it as a server-side dry run, so RBAC and admission are proven before anyone
approves. Execution re-reads the CronJob (``TargetChanged`` if its template
moved), creates the Job under a name derived from the request, waits for it and
reports its exit code and the end of its log, secrets redacted.

The name is the idempotency key: two replicas executing the same approval both
try to create it; the API server lets exactly one succeed and the other gets
409 AlreadyExists, checks the Job is this request's and follows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes import client
from pydantic import ValidationError

from bot.actions.base import (
    ActionError,
    ActionFailed,
    ExecutionContext,
    ExecutionResult,
    Preview,
    TargetChanged,
)
from bot.actions.catalog import RunJob
from bot.actions.kubernetes_base import (
    DRY_RUN_OK,
    KubeExecutor,
    expect_params,
    resource_version_of,
    snapshot_field,
)
from bot.actions.kubernetes_client import AlreadyExists, NotFound, trim
from bot.actions.kubernetes_job_spec import (
    PREVIEW_KEY,
    Rendered,
    is_ours,
    job_body,
    job_name,
    outcome,
    render,
    request_key,
    template_digest,
    words,
)
from bot.actions.registry import ActionParams
from bot.logging import redact_text

LOG_LINES = 40
_MAX_LINE = 500  # one runaway line (a JSON dump) must not fill the Slack message


class RunJobExecutor(KubeExecutor):
    action = "k8s.run_job"

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        request_timeout: float = 30.0,
        poll_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(api_client, request_timeout=request_timeout)
        self._poll = poll_seconds
        self._clock = clock
        self._sleep = sleep

    def preview(self, params: ActionParams) -> Preview:
        p = validated_params(params)
        cronjob = self._cronjob(p)
        shown = render(cronjob, p)
        # No request exists yet: a placeholder name, the real one at execution.
        body = job_body(cronjob, p, job_name(p.cronjob, PREVIEW_KEY), PREVIEW_KEY)
        self._kube.create_job(p.namespace, body, dry_run=True)
        spec = cronjob.get("spec") or {}
        command = words(shown.command, "(the image's entrypoint)")
        args = _args(shown)
        summary = f"Run a Job from CronJob {p.namespace}/{p.cronjob}: {describe_container(shown)}"
        details = [f"Image {shown.image}", f"Command {command}", f"Args {args}"]
        if p.args is not None:
            original = render(cronjob, p.model_copy(update={"args": None}))
            details[-1] += f" (set by this step; the CronJob's: {_args(original)})"
        if p.container is not None:
            details.append(f"Container {shown.container}")
        suspended = bool(spec.get("suspend"))
        details.append(
            "CronJob suspended: yes (its schedule is off; this Job runs once, now)"
            if suspended
            else f"CronJob suspended: no (it also runs on its schedule, {spec.get('schedule')})"
        )
        active = (cronjob.get("status") or {}).get("active") or []
        if active:
            running = ", ".join(str(ref.get("name")) for ref in active)
            details.append(f"Jobs of this CronJob running now: {running}")
        details += [
            f"Timeout {p.timeout_seconds} s: after that the bot stops waiting (the Job keeps "
            "running)",
            DRY_RUN_OK,
        ]
        snapshot = {
            "uid": (cronjob.get("metadata") or {}).get("uid"),
            "resource_version": resource_version_of(cronjob),
            "template": template_digest(cronjob),
            "container": shown.as_dict(),
            "suspend": suspended,
        }
        return Preview(summary, details, snapshot)

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        p = validated_params(params)
        cronjob, body, key = self._checked_job(p, snapshot, context)
        name = str(body["metadata"]["name"])
        what = f"Job {p.namespace}/{name}"
        attached = self._create_or_attach(p, body, cronjob, key)
        started = self._clock()
        finished = self._wait(p, name, started)
        seconds = round(self._clock() - started)
        exit_code, lines, notes = self._log_tail(p.namespace, name, render(cronjob, p).container)
        if attached:
            notes.insert(0, "Another approval of this request created the Job; the bot followed it")
        tail = [f"Last {LOG_LINES} lines of the log:", *lines] if lines else []
        code = "unknown" if exit_code is None else str(exit_code)
        if finished is None:
            raise ActionFailed(
                f"{what} did not finish within {p.timeout_seconds} s; it is still running "
                f"(kubectl delete job {name} -n {p.namespace} to stop it)",
                details=[*notes, *tail],
            )
        state, said = finished
        details = [f"Exit code {code}", f"Duration {seconds} s", *notes, *tail]
        if state == "Failed":
            reason = [f"Kubernetes says: {said}"] if said else []
            raise ActionFailed(
                f"{what} failed (exit code {code}) after {seconds} s",
                details=[*details[:2], *reason, *details[2:]],
            )
        return ExecutionResult(
            summary=f"{what} completed in {seconds} s (exit code {code})",
            details=details,
            data={
                "job": name,
                "namespace": p.namespace,
                "cronjob": p.cronjob,
                "exit_code": exit_code,
                "duration_seconds": seconds,
                "log_tail": lines,
                "attached": attached,
            },
        )

    def _cronjob(self, p: RunJob) -> dict[str, Any]:
        try:
            return self._kube.cronjob(p.namespace, p.cronjob)
        except NotFound:
            raise ActionError(
                f"CronJob {p.namespace}/{p.cronjob} not found: the bot's get on cronjobs "
                f"(API group batch) in namespace {p.namespace} answered 404; nothing to run"
            ) from None

    def _checked_job(
        self, p: RunJob, snapshot: dict[str, Any], context: ExecutionContext
    ) -> tuple[dict[str, Any], dict[str, Any], str]:
        """(CronJob re-read, the Job to create, request key); TargetChanged if it moved."""
        what = f"CronJob {p.namespace}/{p.cronjob}"
        uid = snapshot_field(snapshot, "uid", str)
        digest = snapshot_field(snapshot, "template", str)
        seen = snapshot_field(snapshot, "container", dict)
        cronjob = self._cronjob(p)
        if (cronjob.get("metadata") or {}).get("uid") != uid:
            raise TargetChanged(
                f"{what} was deleted and re-created since the preview; nothing done"
            )
        now = render(cronjob, p).as_dict()
        changes = [f"{k} {seen.get(k)} → {now[k]}" for k in now if seen.get(k) != now[k]]
        if changes or template_digest(cronjob) != digest:
            said = "; ".join(changes) or "its job template (env, volumes, ...)"
            raise TargetChanged(f"{what} changed since the preview: {said}; nothing done")
        key = request_key(p, context)
        return cronjob, job_body(cronjob, p, job_name(p.cronjob, key), key), key

    def _create_or_attach(
        self, p: RunJob, body: dict[str, Any], cronjob: dict[str, Any], key: str
    ) -> bool:
        """Create the Job; True if another execution of this request had created it."""
        try:
            self._kube.create_job(p.namespace, body)
            return False
        except AlreadyExists:
            name = body["metadata"]["name"]
            existing = self._kube.job(p.namespace, name)
            if not is_ours(existing, cronjob, key):
                raise ActionError(
                    f"Job {p.namespace}/{name} already exists and was not created by the bot "
                    f"for this request from CronJob {p.namespace}/{p.cronjob}; nothing done"
                ) from None
            return True

    def _wait(self, p: RunJob, name: str, started: float) -> tuple[str, str] | None:
        """The Job's outcome, or None if it still runs at the timeout."""
        deadline = started + p.timeout_seconds
        while True:
            try:
                job = self._kube.job(p.namespace, name)
            except ActionError as exc:
                raise ActionError(
                    f"Job {p.namespace}/{name} was created but the bot lost track of it ({exc}); "
                    f"see kubectl get job {name} -n {p.namespace}"
                ) from None
            finished = outcome(job)
            now = self._clock()
            if finished is not None or now >= deadline:
                return finished
            self._sleep(min(self._poll, deadline - now))

    def _log_tail(
        self, ns: str, name: str, container: str
    ) -> tuple[int | None, list[str], list[str]]:
        """(exit code, last log lines redacted, notes on what could not be read)."""
        try:
            pods = self._kube.pods(ns, f"job-name={name}")
        except ActionError as exc:
            return None, [], [f"The Job's pods were not readable, so neither was its log: {exc}"]
        if not pods:
            return None, [], [f"No pod of the Job was found (label job-name={name})"]
        # Retries (backoffLimit) leave several pods: the newest ran last.
        pod = max(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp")))
        exit_code = _exit_code(pod, container)
        pod_name = str((pod.get("metadata") or {}).get("name"))
        try:
            text = self._kube.pod_log(ns, pod_name, container=container, tail_lines=LOG_LINES)
        except ActionError as exc:
            return exit_code, [], [f"The log was not readable: {exc}"]
        # Redacted as a whole first: a PEM key spans lines.
        lines = [trim(line, _MAX_LINE) for line in redact_text(text).splitlines()]
        if not lines:
            return exit_code, [], ["The log is empty"]
        return exit_code, lines[-LOG_LINES:], []


def validated_params(params: ActionParams) -> RunJob:
    """The params, validated again: args become a container's argv, so an instance built
    without validation (``model_construct``) must not smuggle shell syntax into it."""
    p = expect_params(params, RunJob)
    try:
        return RunJob.model_validate(p.model_dump())
    except ValidationError as exc:
        problem = exc.errors()[0].get("msg", "invalid") if exc.errors() else "invalid"
        raise ActionError(f"refused k8s.run_job parameters: {problem}") from None


def describe_container(shown: Rendered) -> str:
    """ "image X, command [...], args [...]", as the approval card shows it."""
    command = words(shown.command, "(the image's entrypoint)")
    return f"image {shown.image}, command {command}, args {_args(shown)}"


def _args(shown: Rendered) -> str:
    # With a command and no args the image's CMD is ignored: it runs with none.
    return words(shown.args, "[]" if shown.command is not None else "(the image's default)")


def _exit_code(pod: dict[str, Any], container: str) -> int | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != container:
            continue
        # lastState: with restartPolicy OnFailure the container may be running again.
        for state in (status.get("state"), status.get("lastState")):
            terminated = (state or {}).get("terminated")
            if terminated and isinstance(terminated.get("exitCode"), int):
                return int(terminated["exitCode"])
    return None
