"""k8s.rollout_restart: the restartedAt annotation, as `kubectl rollout restart` sets it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from kubernetes import client

from bot.actions.base import ActionError, ExecutionContext, TargetChanged
from bot.actions.catalog import RolloutRestart
from bot.actions.kubernetes_restart import RESTARTED_AT, RolloutRestartExecutor
from tests.fakes.kubernetes import FakeKubernetes

NS, APP = "ai", "frenly-ai"  # as seeded by the kube fixture (conftest.py)

PARAMS = RolloutRestart(namespace=NS, deployment=APP)


def template_annotations(kube: FakeKubernetes) -> dict[str, str]:
    template = kube.deployment(NS, APP)["spec"]["template"]
    return dict(template["metadata"].get("annotations") or {})


def test_restart_sets_an_rfc3339_utc_annotation_and_rolls(
    kube: FakeKubernetes, api_client: client.ApiClient, context: ExecutionContext
) -> None:
    executor = RolloutRestartExecutor(api_client)
    assert executor.action == "k8s.rollout_restart"

    preview = executor.preview(PARAMS)

    assert (
        preview.summary
        == f"rollout restart deployment {NS}/{APP}: replace its 3 pods with a rolling update"
    )
    assert "Now: 3 replicas, 3 ready, 3 up to date; generation 1" in preview.details
    assert "Last restart: none recorded" in preview.details
    assert kube.patches(dry_run=True) and not kube.patches(dry_run=False)
    assert RESTARTED_AT not in template_annotations(kube)

    before = datetime.now(UTC).replace(microsecond=0)
    result = executor.execute(PARAMS, preview.snapshot, context)

    stamp = template_annotations(kube)[RESTARTED_AT]
    assert stamp.endswith("Z")
    parsed = datetime.fromisoformat(stamp)  # RFC 3339
    assert parsed.tzinfo is not None and parsed >= before
    assert result.data == {"restarted_at": stamp, "generation": 2, "previous_generation": 1}
    assert "generation 1 → 2" in result.details
    assert result.undo is None
    # The controller rolled a new ReplicaSet: the restart is a real rollout.
    assert (
        kube.deployment(NS, APP)["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        == "2"
    )


def test_clock_is_written_in_utc(
    kube: FakeKubernetes, api_client: client.ApiClient, context: ExecutionContext
) -> None:
    paris = timezone(timedelta(hours=2))
    executor = RolloutRestartExecutor(
        api_client, clock=lambda: datetime(2024, 5, 1, 14, 30, 5, tzinfo=paris)
    )
    executor.execute(PARAMS, executor.preview(PARAMS).snapshot, context)
    assert template_annotations(kube)[RESTARTED_AT] == "2024-05-01T12:30:05Z"


def test_second_restart_shows_the_last_one_and_a_restart_since_preview_is_refused(
    kube: FakeKubernetes, api_client: client.ApiClient, context: ExecutionContext
) -> None:
    first = RolloutRestartExecutor(api_client, clock=lambda: datetime(2024, 5, 1, tzinfo=UTC))
    first.execute(PARAMS, first.preview(PARAMS).snapshot, context)

    executor = RolloutRestartExecutor(api_client)
    preview = executor.preview(PARAMS)
    assert "Last restart: 2024-05-01T00:00:00Z" in preview.details
    kube.update_deployment(
        NS,
        APP,
        lambda d: d["spec"]["template"]["metadata"]["annotations"].update(
            {RESTARTED_AT: "2024-05-01T00:05:00Z"}
        ),
    )

    with pytest.raises(TargetChanged, match="restarted at 2024-05-01T00:05:00Z since the preview"):
        executor.execute(PARAMS, preview.snapshot, context)


def test_paused_deployment_is_not_restarted(
    kube: FakeKubernetes, api_client: client.ApiClient
) -> None:
    kube.update_deployment(NS, APP, lambda d: d["spec"].update(paused=True))
    with pytest.raises(ActionError, match="is paused"):
        RolloutRestartExecutor(api_client).preview(PARAMS)
    assert kube.patches() == []
