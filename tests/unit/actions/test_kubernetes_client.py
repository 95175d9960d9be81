"""Credentials and errors: kubeconfig loading, 401/403/404, unreachable API, no token leaks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from kubernetes import client
from pydantic import ValidationError

from bot.actions.base import ActionError, ActionUnavailable
from bot.actions.catalog import PatchConfigMap, RolloutRestart, RolloutUndo, ScaleDeployment
from bot.actions.kubernetes import (
    ConfigMapPatchExecutor,
    RolloutRestartExecutor,
    RolloutUndoExecutor,
    ScaleExecutor,
    kube_api_client,
)
from tests.fakes.kubernetes import DEFAULT_TOKEN, FakeKubernetes, write_kubeconfig

NS, APP = "ai", "frenly-ai"  # as seeded by the kube fixture (conftest.py)


def test_missing_kubeconfig_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ActionUnavailable, match=r"kubeconfig .*nope not found"):
        kube_api_client(str(tmp_path / "nope"))


def test_kubeconfig_env_is_used(
    kube: FakeKubernetes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = kube.write_kubeconfig(tmp_path / "from-env")
    monkeypatch.setenv("KUBECONFIG", str(path))
    api = kube_api_client(None)
    try:
        ScaleExecutor(api).preview(ScaleDeployment(namespace=NS, deployment=APP, replicas=2))
    finally:
        api.close()
    assert api.configuration.host == kube.url


def test_no_kubeconfig_outside_a_pod_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ActionUnavailable, match=r"no Kubernetes credentials.*in-cluster config"):
        kube_api_client(None)


def test_malformed_kubeconfig_never_quotes_its_token(tmp_path: Path) -> None:
    path = tmp_path / "broken"
    path.write_text(f"users:\n- name: bot\n  user: {{token: {DEFAULT_TOKEN}: oops\n")
    with pytest.raises(ActionUnavailable) as caught:
        kube_api_client(str(path))
    assert DEFAULT_TOKEN not in str(caught.value)


def test_missing_token_is_a_401_action_error(kube: FakeKubernetes, tmp_path: Path) -> None:
    api = kube_api_client(str(kube.write_kubeconfig(tmp_path / "kc", with_token=False)))
    try:
        with pytest.raises(ActionError, match=r"rejected the bot's credentials.*401 Unauthorized"):
            ScaleExecutor(api).preview(ScaleDeployment(namespace=NS, deployment=APP, replicas=0))
    finally:
        api.close()
    assert [r.status for r in kube.requests] == [401]


def test_wrong_token_is_a_401_action_error(kube: FakeKubernetes, tmp_path: Path) -> None:
    api = kube_api_client(str(write_kubeconfig(tmp_path / "kc", kube.url, "wrong-token-123")))
    try:
        with pytest.raises(ActionError, match="401") as caught:
            RolloutUndoExecutor(api).preview(RolloutUndo(namespace=NS, deployment=APP))
    finally:
        api.close()
    assert "wrong-token-123" not in str(caught.value)


def test_missing_deployment_is_not_found(api_client: client.ApiClient) -> None:
    with pytest.raises(ActionError, match=f"^deployment {NS}/x not found$"):
        ScaleExecutor(api_client).preview(ScaleDeployment(namespace=NS, deployment="x", replicas=0))
    with pytest.raises(ActionError, match=f"^deployment {NS}/x not found$"):
        RolloutUndoExecutor(api_client).preview(RolloutUndo(namespace=NS, deployment="x"))


def test_forbidden_names_the_missing_permission(
    kube: FakeKubernetes, api_client: client.ApiClient
) -> None:
    kube.forbid("list", "replicasets", NS)
    with pytest.raises(ActionError) as caught:
        RolloutUndoExecutor(api_client).preview(RolloutUndo(namespace=NS, deployment=APP))
    message = str(caught.value)
    assert message.startswith(
        "Kubernetes RBAC does not let the bot list replicasets in namespace ai"
    )
    assert 'the verb "list" on "replicasets" (API group apps)' in message
    assert "system:serviceaccount:nexus:nexus-bot" in message  # who lacks it, from the server


def test_token_echoed_by_the_server_is_redacted(tmp_path: Path) -> None:
    """A server (or proxy) that echoes the credential back must not leak it into Slack."""
    with FakeKubernetes(user=f"token:{DEFAULT_TOKEN}") as kube:
        kube.add_configmap(NS, "ssot-config", {"enabled": "true"})
        kube.forbid("get", "configmaps")
        api = kube_api_client(str(kube.write_kubeconfig(tmp_path / "kc")))
        try:
            with pytest.raises(ActionError) as caught:
                ConfigMapPatchExecutor(api).preview(
                    PatchConfigMap(namespace=NS, name="ssot-config", data={"enabled": "false"})
                )
        finally:
            api.close()
    assert DEFAULT_TOKEN not in str(caught.value)
    assert "[redacted]" in str(caught.value)


def test_unreachable_api_is_an_action_error(tmp_path: Path) -> None:
    with FakeKubernetes() as kube:
        url = kube.url  # a port that was just free and is closed again
    api = kube_api_client(str(write_kubeconfig(tmp_path / "kc", url)))
    api.configuration.retries = 0
    try:
        with pytest.raises(
            ActionError, match=re.escape("cannot reach the Kubernetes API at http://127.0.0.1")
        ):
            RolloutRestartExecutor(api, request_timeout=2).preview(
                RolloutRestart(namespace=NS, deployment=APP)
            )
    finally:
        api.close()


def test_no_error_message_ever_contains_the_token(
    kube: FakeKubernetes, api_client: client.ApiClient
) -> None:
    kube.forbid("patch", "deployments")
    attempts = [
        lambda: ScaleExecutor(api_client).preview(
            ScaleDeployment(namespace=NS, deployment="gone", replicas=0)
        ),
        lambda: RolloutRestartExecutor(api_client).preview(
            RolloutRestart(namespace=NS, deployment=APP)
        ),
        lambda: RolloutUndoExecutor(api_client).preview(
            RolloutUndo(namespace=NS, deployment=APP, to_revision=7)
        ),
    ]
    for attempt in attempts:
        with pytest.raises(ActionError) as caught:
            attempt()
        assert DEFAULT_TOKEN not in str(caught.value)
        assert DEFAULT_TOKEN not in repr(caught.value.args)


def test_hostile_names_never_reach_the_api() -> None:
    with pytest.raises(ValidationError):
        ScaleDeployment(namespace=NS, deployment="../x", replicas=0)
    with pytest.raises(ValidationError):
        PatchConfigMap(namespace="ai/../kube-system", name="x", data={"a": "b"})
    with pytest.raises(ValidationError):
        PatchConfigMap(namespace=NS, name="x", data={"../a": "b"})


def test_wrong_params_type_is_a_programming_error(api_client: client.ApiClient) -> None:
    with pytest.raises(TypeError, match="expected ScaleDeployment"):
        ScaleExecutor(api_client).preview(RolloutUndo(namespace=NS, deployment=APP))


def test_fake_answers_deserialize_into_the_typed_models(
    kube: FakeKubernetes, api_client: client.ApiClient
) -> None:
    """The fake speaks the real API's JSON: the client's own models accept it."""
    kube.set_image(NS, APP, "registry.example/frenly-ai:2.0")
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    deployment = apps.read_namespaced_deployment(APP, NS)
    assert deployment.spec.template.spec.containers[0].image.endswith(":2.0")
    assert apps.read_namespaced_deployment_scale(APP, NS).spec.replicas == 3
    replicasets = apps.list_namespaced_replica_set(NS, label_selector=f"app={APP}").items
    assert sorted(
        rs.metadata.annotations["deployment.kubernetes.io/revision"] for rs in replicasets
    ) == ["1", "2"]
    assert core.read_namespaced_config_map("ssot-config", NS).data["enabled"] == "true"
    scaled = apps.patch_namespaced_deployment_scale(APP, NS, {"spec": {"replicas": 0}})
    assert scaled.spec.replicas in (0, None) and scaled.status.replicas == 0
