"""Rehearsed Kubernetes actions: the real executors' code, every write a server-side dry run.

The rehearsal executors are the real ones (same re-read, same ``TargetChanged``
checks, same 409 retry) built over `DryRunKubeApi`, whose every non-read call
goes out with ``dryRun=All``: the API server authorizes (RBAC), admits
(webhooks, validation) and answers the change, and stores nothing. The
dry-run-ness belongs to the API object the rehearsal executor was built with,
not to a flag anyone can flip, so a rehearsal cannot write for real and a real
executor in the same process is unaffected.

``k8s.run_job`` (`run_job_rehearsal`) is the exception: its rehearsal runs the
real re-read and checks and dry-runs the Job's creation, but never waits for
the Job or reads a log, since a dry-run Job never runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client

from bot.actions.base import ActionError, ExecutionContext, ExecutionResult, Executor, Preview
from bot.actions.catalog import PatchConfigMap, RolloutUndo
from bot.actions.kubernetes import (
    ConfigMapPatchExecutor,
    RolloutRestartExecutor,
    RolloutUndoExecutor,
    ScaleExecutor,
)
from bot.actions.kubernetes_base import KubeExecutor
from bot.actions.kubernetes_client import KubeApi, _Op
from bot.actions.kubernetes_job_spec import render
from bot.actions.kubernetes_jobs import (
    LOG_LINES,
    RunJobExecutor,
    describe_container,
    validated_params,
)
from bot.actions.registry import ActionParams
from bot.actions.rehearsal_base import would_not_have_worked

_READS = frozenset({"get", "list"})
DRY_RUN_CHECK = "server-side dry run of the change accepted (RBAC and admission)"


class DryRunKubeApi(KubeApi):
    """`KubeApi` whose writes are all server-side dry runs: it cannot change the cluster."""

    def _send(self, op: _Op, method: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        # Every call goes through here, so forcing dryRun=All on anything that is
        # not a read also covers a write method added to KubeApi later.
        if op.verb not in _READS:
            kwargs["dry_run"] = "All"
        return super()._send(op, method, *args, **kwargs)


class _DryRunOnly(KubeExecutor):
    """Mixed in before a real executor: its API object is a `DryRunKubeApi`."""

    def __init__(
        self, api_client: client.ApiClient, *, request_timeout: float = 30.0, **kwargs: Any
    ) -> None:
        super().__init__(api_client, request_timeout=request_timeout, **kwargs)
        self._kube = DryRunKubeApi(api_client, request_timeout)


class _DryRunScale(_DryRunOnly, ScaleExecutor):
    pass


class _DryRunRestart(_DryRunOnly, RolloutRestartExecutor):
    pass


class _DryRunUndo(_DryRunOnly, RolloutUndoExecutor):
    pass


class _DryRunConfigMap(_DryRunOnly, ConfigMapPatchExecutor):
    pass


class _DryRunJob(_DryRunOnly, RunJobExecutor):
    """k8s.run_job rehearsed: the real re-read and checks, then the create as a dry run.

    Unlike the other rehearsals it does not run the real execution: that would
    wait for a Job a dry run never made (and, on a 409, follow a real one).
    """

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        p = validated_params(params)
        cronjob, body, _ = self._checked_job(p, snapshot, context)
        self._kube.create_job(p.namespace, body, dry_run=True)  # dry run either way
        name = str(body["metadata"]["name"])
        shown = render(cronjob, p)
        return ExecutionResult(
            summary=f"create Job {p.namespace}/{name} from CronJob {p.namespace}/{p.cronjob}",
            details=[
                f"Run {describe_container(shown)}; wait up to {p.timeout_seconds} s for it, "
                f"then report its exit code and the last {LOG_LINES} lines of its log"
            ],
            data={
                "job": name,
                "namespace": p.namespace,
                "cronjob": p.cronjob,
                "container": shown.as_dict(),
            },
        )


Describe = Callable[[ActionParams, ExecutionResult], tuple[str, bool]]


class KubeRehearsal:
    """One Kubernetes action rehearsed: the real preview and execution, over dry-run writes."""

    def __init__(self, dry_run: Executor, describe: Describe) -> None:
        self.action = dry_run.action
        self._dry_run = dry_run
        self._describe = describe

    def preview(self, params: ActionParams) -> Preview:
        return self._dry_run.preview(params)

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        try:
            done = self._dry_run.execute(params, snapshot, context)
        except ActionError as exc:  # 403 RBAC, 422 admission, target changed...
            raise would_not_have_worked(exc) from None
        what, wrote = self._describe(params, done)
        checks = ["target re-read: unchanged since the preview"]
        if wrote:
            checks.append(DRY_RUN_CHECK)
            summary = f"Would work (server-side dry run accepted): {what}"
        else:
            checks.append("nothing to change, so no write was needed")
            summary = f"Would work, nothing to change: {what}"
        return ExecutionResult(
            summary=summary,
            details=[
                *(f"Checked: {check}" for check in checks),
                "Nothing was changed: every write was a server-side dry run (dryRun=All)",
                *(f"The real step would report: {line}" for line in done.details),
            ],
            data={"rehearsal": True, "checks": checks, "would_have": done.data},
        )


def kube_rehearsals(api_client: client.ApiClient) -> list[KubeRehearsal]:
    """The four Kubernetes rehearsals over ``api_client`` (writes dry-run only)."""
    return [
        KubeRehearsal(_DryRunScale(api_client), _scale),
        KubeRehearsal(_DryRunRestart(api_client), _restart),
        KubeRehearsal(_DryRunUndo(api_client), _undo),
        KubeRehearsal(_DryRunConfigMap(api_client), _configmap),
    ]


def run_job_rehearsal(api_client: client.ApiClient) -> KubeRehearsal:
    """k8s.run_job's rehearsal over ``api_client``: never creates, waits or reads a log."""
    return KubeRehearsal(_DryRunJob(api_client), _run_job)


# What each rehearsed step would have done, and whether it needed a write.


def _scale(params: ActionParams, done: ExecutionResult) -> tuple[str, bool]:
    what = f"deployment {done.data['namespace']}/{done.data['deployment']}"
    before, after = done.data["from_replicas"], done.data["to_replicas"]
    if before == after:
        return f"{what} already has {before} replicas", False
    return f"scale {what} from {before} to {after} replicas", True


def _restart(params: ActionParams, done: ExecutionResult) -> tuple[str, bool]:
    return params.describe(), True


def _undo(params: ActionParams, done: ExecutionResult) -> tuple[str, bool]:
    assert isinstance(params, RolloutUndo)
    what = f"deployment {params.namespace}/{params.deployment}"
    before, after = done.data["from_revision"], done.data["to_revision"]
    return f"roll {what} back from revision {before} to revision {after}", True


def _configmap(params: ActionParams, done: ExecutionResult) -> tuple[str, bool]:
    assert isinstance(params, PatchConfigMap)
    changes = "; ".join(done.details) if len(done.details) <= 2 else f"{len(done.details)} keys"
    return f"patch ConfigMap {params.namespace}/{params.name}: {changes}", True


def _run_job(params: ActionParams, done: ExecutionResult) -> tuple[str, bool]:
    return done.summary, True
