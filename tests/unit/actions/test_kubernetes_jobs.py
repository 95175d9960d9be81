"""k8s.run_job: a Job from a CronJob, as kubectl makes it, once per request, with its log."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from pydantic import ValidationError

import bot.logging
from bot.actions.base import (
    ActionError,
    ActionFailed,
    ExecutionContext,
    ExecutionResult,
    TargetChanged,
)
from bot.actions.catalog import RunJob
from bot.actions.kubernetes_client import KubeApi, kube_api_client
from bot.actions.kubernetes_job_spec import INSTANTIATE, REQUEST_LABEL, job_name, request_key
from bot.actions.kubernetes_jobs import RunJobExecutor
from bot.logging import register_secrets
from tests.fakes.kubernetes import FakeKubernetes

NS, CJ = "nexus", "ssot-sync"
JOB = "ssot-sync-nexus-12"  # the Job of request 12
IMAGE = "registry.example/ssot-sync:1.4"
COMMAND = ["python", "scripts/sync_services_ssot.py"]


class FakeClock:
    """Monotonic time that moves only when the executor sleeps; hooks run at each wake-up."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.on_wake: list[Callable[[float], None]] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        for hook in self.on_wake:
            hook(self.now - 1000.0)


@pytest.fixture
def cronjob(kube: FakeKubernetes) -> dict[str, Any]:
    return kube.add_cronjob(NS, CJ, image=IMAGE, command=COMMAND, args=["--dry-run"])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def request_context(context: ExecutionContext) -> ExecutionContext:
    return dataclasses.replace(context, request_id=12)


def executor(api: client.ApiClient, clock: FakeClock, poll: float = 1.0) -> RunJobExecutor:
    return RunJobExecutor(api, poll_seconds=poll, clock=clock, sleep=clock.sleep)


def run_job(**kwargs: Any) -> RunJob:
    return RunJob(namespace=NS, cronjob=CJ, **kwargs)


def finish_at(kube: FakeKubernetes, clock: FakeClock, seconds: float, **outcome: Any) -> None:
    """The Job's pod starts when created and exits ``seconds`` later (by the fake clock)."""
    kube.on_job_created(lambda job: kube.start_job(NS, job["metadata"]["name"]))

    def wake(elapsed: float) -> None:
        if elapsed >= seconds and kube.jobs(NS) and "conditions" not in kube.job(NS, JOB)["status"]:
            kube.finish_job(NS, JOB, **outcome)

    clock.on_wake.append(wake)


def gets(kube: FakeKubernetes, suffix: str) -> list[str]:
    return [r.path for r in kube.requests if r.method == "GET" and r.path.endswith(suffix)]


@pytest.mark.usefixtures("cronjob")
def test_preview_shows_the_container_and_only_dry_runs_the_create(
    kube: FakeKubernetes, api_client: client.ApiClient, clock: FakeClock
) -> None:
    preview = executor(api_client, clock).preview(run_job(args=["--force"]))

    assert preview.summary == (
        f"Run a Job from CronJob {NS}/{CJ}: image {IMAGE}, "
        "command [python scripts/sync_services_ssot.py], args [--force]"
    )
    assert preview.details[:3] == [
        f"Image {IMAGE}",
        "Command [python scripts/sync_services_ssot.py]",
        "Args [--force] (set by this step; the CronJob's: [--dry-run])",
    ]
    assert "CronJob suspended: yes (its schedule is off; this Job runs once, now)" in (
        preview.details
    )
    assert any(line.startswith("Timeout 600 s") for line in preview.details)
    assert preview.snapshot["container"] == {
        "container": CJ,
        "image": IMAGE,
        "command": COMMAND,
        "args": ["--force"],
    }
    assert preview.snapshot["uid"] == kube.cronjob(NS, CJ)["metadata"]["uid"]
    [dry] = kube.creates()
    assert dry.dry_run and dry.status == 201
    assert kube.jobs() == []
    # The body kubectl create job --from=cronjob would send, plus the request label.
    meta = dry.body["metadata"]
    assert meta["name"] == "ssot-sync-nexus-preview"
    assert meta["annotations"] == {INSTANTIATE: "manual"}
    assert meta["labels"] == {REQUEST_LABEL: "preview"}
    cj_meta = kube.cronjob(NS, CJ)["metadata"]
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": CJ,
            "uid": cj_meta["uid"],
            "controller": True,
        }
    ]
    [container] = dry.body["spec"]["template"]["spec"]["containers"]
    assert container["command"] == COMMAND and container["args"] == ["--force"]
    assert [(r.method, r.path.rsplit("/", 2)[-2]) for r in kube.requests] == [
        ("GET", "cronjobs"),
        ("POST", NS),  # .../namespaces/nexus/jobs
    ]


@pytest.mark.usefixtures("cronjob")
def test_execute_waits_for_the_job_and_reports_the_log_tail(
    kube: FakeKubernetes,
    api_client: client.ApiClient,
    clock: FakeClock,
    request_context: ExecutionContext,
) -> None:
    log = "".join(f"line {i}\n" for i in range(1, 101))
    finish_at(kube, clock, 14, succeeded=True, exit_code=0, log=log)
    run = executor(api_client, clock, poll=2)
    preview = run.preview(run_job())

    result = run.execute(run_job(), preview.snapshot, request_context)

    assert result.summary == f"Job {NS}/{JOB} completed in 14 s (exit code 0)"
    tail = [f"line {i}" for i in range(61, 101)]
    assert result.details == ["Exit code 0", "Duration 14 s", "Last 40 lines of the log:", *tail]
    assert result.data == {
        "job": JOB,
        "namespace": NS,
        "cronjob": CJ,
        "exit_code": 0,
        "duration_seconds": 14,
        "log_tail": tail,
        "attached": False,
    }
    [real] = kube.creates(dry_run=False)
    assert real.status == 201
    job = kube.job(NS, JOB)
    assert job["metadata"]["labels"][REQUEST_LABEL] == "12"
    assert job["metadata"]["annotations"][INSTANTIATE] == "manual"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["--dry-run"]
    assert len(gets(kube, f"/jobs/{JOB}")) == 8  # at 0, 2, ..., 14 s
    [log_read] = [r for r in kube.requests if r.path.endswith("/log")]
    assert log_read.query == {"container": CJ, "tailLines": "40"}


@pytest.mark.usefixtures("cronjob")
def test_failed_job_raises_with_its_exit_code_and_log(
    kube: FakeKubernetes,
    api_client: client.ApiClient,
    clock: FakeClock,
    request_context: ExecutionContext,
) -> None:
    log = "syncing services\nTraceback (most recent call last):\nValueError: no anchor\n"
    finish_at(kube, clock, 9, succeeded=False, exit_code=2, log=log)
    run = executor(api_client, clock, poll=3)

    with pytest.raises(ActionFailed) as failed:
        run.execute(run_job(), run.preview(run_job()).snapshot, request_context)

    assert str(failed.value) == f"Job {NS}/{JOB} failed (exit code 2) after 9 s"
    assert failed.value.details == [
        "Exit code 2",
        "Duration 9 s",
        "Kubernetes says: BackoffLimitExceeded: Job has reached the specified backoff limit",
        "Last 40 lines of the log:",
        "syncing services",
        "Traceback (most recent call last):",
        "ValueError: no anchor",
    ]


@pytest.mark.usefixtures("cronjob")
def test_job_still_running_at_the_timeout_is_reported_and_left_alone(
    kube: FakeKubernetes,
    api_client: client.ApiClient,
    clock: FakeClock,
    request_context: ExecutionContext,
) -> None:
    kube.on_job_created(
        lambda job: kube.start_job(NS, job["metadata"]["name"], log="syncing 1/3\nsyncing 2/3\n")
    )
    run = executor(api_client, clock, poll=4)
    params = run_job(timeout_seconds=10)

    with pytest.raises(ActionFailed) as failed:
        run.execute(params, run.preview(params).snapshot, request_context)

    assert str(failed.value) == (
        f"Job {NS}/{JOB} did not finish within 10 s; it is still running "
        f"(kubectl delete job {JOB} -n {NS} to stop it)"
    )
    assert failed.value.details == ["Last 40 lines of the log:", "syncing 1/3", "syncing 2/3"]
    assert clock.now == 1010.0  # slept 4 + 4 + 2: the last nap ends at the deadline
    assert len(gets(kube, f"/jobs/{JOB}")) == 4
    assert "conditions" not in kube.job(NS, JOB)["status"]  # not deleted, still running


@pytest.mark.usefixtures("cronjob")
def test_two_replicas_approving_at_once_create_one_job(
    kube: FakeKubernetes,
    api_client: client.ApiClient,
    kubeconfig: Path,
    request_context: ExecutionContext,
) -> None:
    kube.auto_finish_jobs(exit_code=0, log="synced 12 services\n")
    other_client = kube_api_client(str(kubeconfig))
    replicas = [RunJobExecutor(api, poll_seconds=0.01) for api in (api_client, other_client)]
    snapshot = replicas[0].preview(run_job()).snapshot
    start = threading.Barrier(2)
    results: list[ExecutionResult] = []

    def approve(replica: RunJobExecutor) -> None:
        start.wait()
        results.append(replica.execute(run_job(), snapshot, request_context))

    threads = [threading.Thread(target=approve, args=(r,)) for r in replicas]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    finally:
        other_client.close()

    assert [j["metadata"]["name"] for j in kube.jobs()] == [JOB]
    assert sorted(r.status for r in kube.creates(dry_run=False)) == [201, 409]
    assert sorted(r.data["attached"] for r in results) == [False, True]
    for result in results:
        assert result.summary.startswith(f"Job {NS}/{JOB} completed in ")
        assert result.data["log_tail"] == ["synced 12 services"]
    attached = next(r for r in results if r.data["attached"])
    assert "Another approval of this request created the Job; the bot followed it" in (
        attached.details
    )


@pytest.mark.usefixtures("cronjob")
def test_a_namesake_job_that_is_not_this_requests_is_refused(
    kube: FakeKubernetes,
    api_client: client.ApiClient,
    clock: FakeClock,
    request_context: ExecutionContext,
) -> None:
    run = executor(api_client, clock)
    snapshot = run.preview(run_job()).snapshot
    stranger = {
        "metadata": {"name": JOB},
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "x", "image": "x:1"}], "restartPolicy": "Never"}
            }
        },
    }
    KubeApi(api_client, 10).create_job(NS, stranger)

    with pytest.raises(ActionError, match=f"Job {NS}/{JOB} already exists and was not created"):
        run.execute(run_job(), snapshot, request_context)
    assert len(gets(kube, f"/jobs/{JOB}")) == 1  # checked whose it is; never polled


@pytest.mark.usefixtures("cronjob")
def test_template_change_since_the_preview_is_refused_but_a_status_update_is_not(
    kube: FakeKubernetes,
    api_client: client.ApiClient,
    clock: FakeClock,
    request_context: ExecutionContext,
) -> None:
    run = executor(api_client, clock)
    snapshot = run.preview(run_job()).snapshot
    pod_spec = ["spec", "jobTemplate", "spec", "template", "spec"]

    def set_image(cronjob: dict[str, Any]) -> None:
        dig(cronjob, pod_spec)["containers"][0]["image"] = "registry.example/ssot-sync:1.5"

    kube.update_cronjob(NS, CJ, set_image)
    with pytest.raises(TargetChanged, match=f"image {IMAGE} → registry.example/ssot-sync:1.5"):
        run.execute(run_job(), snapshot, request_context)

    snapshot = run.preview(run_job()).snapshot
    kube.update_cronjob(
        NS,
        CJ,
        lambda c: dig(c, pod_spec)["containers"][0].update(env=[{"name": "X", "value": "1"}]),
    )
    with pytest.raises(TargetChanged, match="its job template"):
        run.execute(run_job(), snapshot, request_context)
    assert kube.creates(dry_run=False) == []

    snapshot = run.preview(run_job()).snapshot
    kube.update_cronjob(
        NS, CJ, lambda c: c["status"].update(lastScheduleTime="2026-01-01T03:00:00Z")
    )
    kube.auto_finish_jobs()
    assert run.execute(run_job(), snapshot, request_context).data["exit_code"] == 0


def dig(obj: dict[str, Any], path: list[str]) -> dict[str, Any]:
    for key in path:
        obj = obj[key]
    return obj


@pytest.mark.usefixtures("cronjob")
def test_unknown_container_and_missing_cronjob_are_refused_before_any_write(
    kube: FakeKubernetes, api_client: client.ApiClient, clock: FakeClock
) -> None:
    run = executor(api_client, clock)

    with pytest.raises(ActionError, match=f"has no container named nope \\(it has: {CJ}\\)"):
        run.preview(run_job(container="nope"))
    with pytest.raises(ActionError) as missing:
        run.preview(RunJob(namespace=NS, cronjob="gone"))

    assert str(missing.value).startswith(f"CronJob {NS}/gone not found: the bot's get on cronjobs")
    assert kube.creates() == []


@pytest.mark.usefixtures("cronjob")
def test_rbac_denial_of_create_surfaces_in_the_preview(
    kube: FakeKubernetes, api_client: client.ApiClient, clock: FakeClock
) -> None:
    kube.forbid("create", "jobs", NS)

    with pytest.raises(ActionError) as denied:
        executor(api_client, clock).preview(run_job())

    message = str(denied.value)
    assert 'grant its service account the verb "create" on "jobs" (API group batch)' in message
    assert "403 Forbidden" in message and f"namespace {NS}" in message
    assert kube.jobs() == []


@pytest.fixture
def registered_secret() -> Iterator[str]:
    saved = set(bot.logging._secret_values)
    secret = "s3cr3t-sync-key-9f2"
    register_secrets([secret])
    yield secret
    register_secrets(saved, replace=True)


@pytest.mark.usefixtures("cronjob")
def test_log_secrets_are_redacted_and_an_unreadable_log_is_said(
    kube: FakeKubernetes,
    api_client: client.ApiClient,
    clock: FakeClock,
    request_context: ExecutionContext,
    registered_secret: str,
) -> None:
    kube.auto_finish_jobs(log=f"connecting with key {registered_secret}\ndone\n")
    run = executor(api_client, clock)

    result = run.execute(run_job(), run.preview(run_job()).snapshot, request_context)

    assert result.data["log_tail"] == ["connecting with key [REDACTED]", "done"]
    assert registered_secret not in repr(result)

    kube.forbid("get", "pods/log", NS)
    again = dataclasses.replace(request_context, request_id=13)
    result = run.execute(run_job(), run.preview(run_job()).snapshot, again)

    assert result.summary == f"Job {NS}/ssot-sync-nexus-13 completed in 0 s (exit code 0)"
    [note] = [line for line in result.details if "not readable" in line]
    assert 'the verb "get" on "pods/log"' in note
    assert result.data["log_tail"] == []


@pytest.mark.parametrize("arg", ["--force; rm -rf /", "$(id)", "a\nb", "`id`", "x && y"])
@pytest.mark.usefixtures("cronjob")
def test_argument_injection_is_refused_before_any_request(
    kube: FakeKubernetes,
    api_client: client.ApiClient,
    clock: FakeClock,
    request_context: ExecutionContext,
    arg: str,
) -> None:
    with pytest.raises(ValidationError, match="shell syntax or control characters"):
        RunJob.model_validate({"namespace": NS, "cronjob": CJ, "args": ["--anchor", arg]})
    # Built without validation, the executor validates again before any request.
    smuggled = RunJob.model_construct(namespace=NS, cronjob=CJ, args=[arg], container=None)
    run = executor(api_client, clock)
    with pytest.raises(ActionError, match=r"refused k8s\.run_job parameters"):
        run.preview(smuggled)
    with pytest.raises(ActionError, match=r"refused k8s\.run_job parameters"):
        run.execute(smuggled, {}, request_context)

    assert kube.requests == []


def test_job_names_are_valid_and_the_same_on_every_replica(context: ExecutionContext) -> None:
    assert job_name("ssot-sync", "12") == JOB
    long = job_name("a" * 39 + "-" + "b" * 200, "123456")
    assert long == "a" * 39 + "-nexus-123456"  # the cut's trailing "-" is dropped
    assert len(job_name("c" * 253, "9" * 20)) <= 63

    params = run_job(args=["--force"])
    key = request_key(params, context)  # no request id: the incident and a digest
    assert key.startswith("i42-") and len(key) == len("i42-") + 8
    other_approver = dataclasses.replace(context, approved_by="U0OTHER")
    assert request_key(params, other_approver) == key
    assert request_key(run_job(args=["--other"]), context) != key
