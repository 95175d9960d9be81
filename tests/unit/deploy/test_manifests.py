"""The overlays, rendered with `kubectl kustomize`: secure, valid, and what the README says.

Every object validates against the OpenAPI schemas (strict: no unknown field) of
the newest Kubernetes release kubernetes-validate ships. The checks of
manifest_checks.py pass on both overlays, and each of them fails on a copy
broken on purpose, so none of them can pass vacuously.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest
from packaging.version import Version

from bot.settings import Settings, load_settings
from tests.unit.deploy import manifest_checks as checks
from tests.unit.deploy.conftest import OVERLAYS
from tests.unit.deploy.manifest_checks import Manifest, bot_container, of_kind, pod_template, the

pytestmark = pytest.mark.kubectl

# The oldest schema release acceptable as "current" when the package is older.
MINIMUM_SCHEMA_VERSION = Version("1.32")


def shipped_allowed(monkeypatch: pytest.MonkeyPatch) -> Any:
    """allowed_targets of the shipped config/nexus.yaml, whatever this environment sets."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.setenv("NEXUS_CONFIG", str(checks.REPO_ROOT / "config" / "nexus.yaml"))
    return load_settings().allowed_targets


# --- what was rendered ----------------------------------------------------------------


def kinds_and_names(objects: list[Manifest]) -> list[tuple[str, str | None, str]]:
    names = []
    for obj in objects:
        name = obj["metadata"]["name"]
        if obj["kind"] == "ConfigMap":
            name = name.rsplit("-", 1)[0]  # without kustomize's hash suffix
        names.append((obj["kind"], obj["metadata"].get("namespace"), name))
    return sorted(names, key=str)


COMMON = [
    ("ConfigMap", "nexus-bot", "nexus-bot-config"),
    ("ConfigMap", "nexus-bot", "nexus-bot-playbooks"),
    ("Deployment", "nexus-bot", "nexus-bot"),
    ("NetworkPolicy", "nexus-bot", "nexus-bot"),
    ("Role", "ai", "nexus-bot-actions"),
    ("Role", "nexus", "nexus-bot-actions"),
    ("RoleBinding", "ai", "nexus-bot-actions"),
    ("RoleBinding", "nexus", "nexus-bot-actions"),
    ("Service", "nexus-bot", "nexus-bot"),
    ("ServiceAccount", "nexus-bot", "nexus-bot"),
]
EXPECTED_OBJECTS = {
    "sqlite": sorted([*COMMON, ("PersistentVolumeClaim", "nexus-bot", "nexus-bot-data")], key=str),
    "postgresql": sorted(
        [
            *COMMON,
            ("Job", "nexus-bot", "nexus-bot-db-upgrade-0-1-0"),
            ("PodDisruptionBudget", "nexus-bot", "nexus-bot"),
        ],
        key=str,
    ),
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_exactly_its_objects(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    assert kinds_and_names(rendered[overlay]) == EXPECTED_OBJECTS[overlay]


# --- schema validation ----------------------------------------------------------------


def schema_version() -> str:
    latest: str = kubernetes_validate.latest_version()
    assert Version(latest) >= MINIMUM_SCHEMA_VERSION, f"kubernetes-validate ships only {latest}"
    return latest


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_newest_kubernetes_schemas(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    version = schema_version()
    failures = []
    for obj in rendered[overlay]:
        try:
            used = kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            failures.append(f"{checks.name_of(obj)}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            failures.append(f"{checks.name_of(obj)}: no schema: {exc.message}")
        else:
            assert used == ".".join(version.split(".")[:2]), used
    assert failures == []


def test_strict_validation_catches_an_unknown_field_and_a_wrong_type(
    rendered: dict[str, list[Manifest]],
) -> None:
    version = schema_version()
    deployment = copy.deepcopy(the(rendered["postgresql"], "Deployment"))
    bot_container(deployment)["securityContext"]["readOnlyRootFilesystm"] = True  # typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)
    job = copy.deepcopy(the(rendered["postgresql"], "Job"))
    job["spec"]["backoffLimit"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, version, strict=True)


# --- the checks pass on both overlays ----------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(
    "check",
    [
        checks.pod_security_problems,
        checks.secret_problems,
        checks.probe_problems,
        checks.service_problems,
        checks.network_policy_problems,
        checks.config_problems,
        checks.namespace_problems,
    ],
    ids=lambda check: check.__name__.removesuffix("_problems"),
)
def test_overlay_passes(
    rendered: dict[str, list[Manifest]],
    overlay: str,
    check: Callable[[list[Manifest]], list[str]],
) -> None:
    assert check(rendered[overlay]) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_roles_are_exactly_the_generated_least_privilege_rules(
    rendered: dict[str, list[Manifest]], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert checks.rbac_problems(rendered[overlay], shipped_allowed(monkeypatch)) == []


def test_sqlite_overlay_is_one_replica_on_a_volume(rendered: dict[str, list[Manifest]]) -> None:
    assert checks.sqlite_problems(rendered["sqlite"]) == []


def test_postgresql_overlay_is_highly_available_and_migrates_first(
    rendered: dict[str, list[Manifest]],
) -> None:
    assert checks.postgresql_problems(rendered["postgresql"]) == []


def test_the_image_tag_is_the_project_version(rendered: dict[str, list[Manifest]]) -> None:
    for overlay in OVERLAYS:
        image = bot_container(the(rendered[overlay], "Deployment"))["image"]
        assert image == f"{checks.IMAGE}:{checks.project_version()}"


# --- each check fails on a copy broken on purpose -------------------------------------------


def _container(objects: list[Manifest]) -> Manifest:
    return bot_container(the(objects, "Deployment"))


def _pod(objects: list[Manifest]) -> Manifest:
    pod: Manifest = pod_template(the(objects, "Deployment"))["spec"]
    return pod


def _job_container(objects: list[Manifest]) -> Manifest:
    container: Manifest = pod_template(the(objects, "Job"))["spec"]["containers"][0]
    return container


def _role(objects: list[Manifest]) -> Manifest:
    return of_kind(objects, "Role")[0]


def _set_port(objects: list[Manifest], port: object) -> None:
    the(objects, "NetworkPolicy")["spec"]["ingress"][0]["ports"][0]["port"] = port


def _data_volume(objects: list[Manifest]) -> Manifest:
    (volume,) = (v for v in _pod(objects)["volumes"] if v["name"] == "data")
    return volume


Breakage = Callable[[list[Manifest]], object]
BREAKAGES: list[tuple[str, str, Breakage, str]] = [
    # (id, overlay, how to break it, the check that must notice)
    (
        "root user",
        "sqlite",
        lambda o: _container(o)["securityContext"].update(runAsUser=0),
        "pod_security",
    ),
    (
        "runAsNonRoot false",
        "sqlite",
        lambda o: _container(o)["securityContext"].update(runAsNonRoot=False),
        "pod_security",
    ),
    (
        "pod runAsNonRoot",
        "postgresql",
        lambda o: _pod(o)["securityContext"].pop("runAsNonRoot"),
        "pod_security",
    ),
    (
        "writable root fs",
        "sqlite",
        lambda o: _container(o)["securityContext"].pop("readOnlyRootFilesystem"),
        "pod_security",
    ),
    (
        "privilege escalation",
        "postgresql",
        lambda o: _job_container(o)["securityContext"].update(allowPrivilegeEscalation=True),
        "pod_security",
    ),
    (
        "capability added",
        "sqlite",
        lambda o: _container(o)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
        "pod_security",
    ),
    (
        "capabilities kept",
        "sqlite",
        lambda o: _container(o)["securityContext"]["capabilities"].update(drop=[]),
        "pod_security",
    ),
    (
        "seccomp unconfined",
        "postgresql",
        lambda o: _container(o)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        "pod_security",
    ),
    (
        "privileged",
        "sqlite",
        lambda o: _container(o)["securityContext"].update(privileged=True),
        "pod_security",
    ),
    (
        "no memory limit",
        "postgresql",
        lambda o: _container(o)["resources"]["limits"].pop("memory"),
        "pod_security",
    ),
    (
        "no memory request",
        "postgresql",
        lambda o: _job_container(o)["resources"]["requests"].pop("memory"),
        "pod_security",
    ),
    (
        "hostPath",
        "sqlite",
        lambda o: _pod(o)["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "pod_security",
    ),
    ("hostNetwork", "postgresql", lambda o: _pod(o).update(hostNetwork=True), "pod_security"),
    (
        "latest image",
        "sqlite",
        lambda o: _container(o).update(image=f"{checks.IMAGE}:latest"),
        "pod_security",
    ),
    (
        "untagged image",
        "postgresql",
        lambda o: _job_container(o).update(image=checks.IMAGE),
        "pod_security",
    ),
    (
        "other version",
        "sqlite",
        lambda o: _container(o).update(image=f"{checks.IMAGE}:9.9.9"),
        "pod_security",
    ),
    (
        "init container as root",
        "sqlite",
        lambda o: _pod(o).update(
            initContainers=[
                {"name": "i", "image": "busybox:1", "securityContext": {"runAsUser": 0}}
            ]
        ),
        "pod_security",
    ),
    (
        "Secret object",
        "sqlite",
        lambda o: o.append(
            {
                "kind": "Secret",
                "metadata": {"name": "nexus-bot", "namespace": "nexus-bot"},
                "stringData": {"SLACK_BOT_TOKEN": "xoxb"},
            }
        ),
        "secret",
    ),
    ("no envFrom", "postgresql", lambda o: _container(o).pop("envFrom"), "secret"),
    (
        "inline token",
        "sqlite",
        lambda o: _container(o)["env"].append({"name": "SLACK_BOT_TOKEN", "value": "xoxb-1"}),
        "secret",
    ),
    (
        "liveness on /",
        "sqlite",
        lambda o: _container(o)["livenessProbe"]["httpGet"].update(path="/"),
        "probe",
    ),
    (
        "readiness on /healthz",
        "postgresql",
        lambda o: _container(o)["readinessProbe"]["httpGet"].update(path="/healthz"),
        "probe",
    ),
    (
        "readiness on another port",
        "postgresql",
        lambda o: _container(o)["readinessProbe"]["httpGet"].update(port=8080),
        "probe",
    ),
    ("no startup probe", "sqlite", lambda o: _container(o).pop("startupProbe"), "probe"),
    (
        "container port",
        "sqlite",
        lambda o: _container(o)["ports"][0].update(containerPort=8000),
        "probe",
    ),
    ("NodePort", "sqlite", lambda o: the(o, "Service")["spec"].update(type="NodePort"), "service"),
    (
        "service selector",
        "postgresql",
        lambda o: the(o, "Service")["spec"].update(selector={"app": "x"}),
        "service",
    ),
    (
        "ingress on all ports",
        "sqlite",
        lambda o: the(o, "NetworkPolicy")["spec"]["ingress"][0].pop("ports"),
        "network_policy",
    ),
    ("ingress on 22", "postgresql", lambda o: _set_port(o, 22), "network_policy"),
    (
        "ingress unrestricted",
        "sqlite",
        lambda o: the(o, "NetworkPolicy")["spec"].update(policyTypes=["Egress"]),
        "network_policy",
    ),
    (
        "no NetworkPolicy",
        "postgresql",
        lambda o: o.remove(the(o, "NetworkPolicy")),
        "network_policy",
    ),
    (
        "playbook missing",
        "sqlite",
        lambda o: next(
            c for c in of_kind(o, "ConfigMap") if "performance-degradation.yaml" in c["data"]
        )["data"].pop("performance-degradation.yaml"),
        "config",
    ),
    (
        "stale config",
        "postgresql",
        lambda o: next(c for c in of_kind(o, "ConfigMap") if "nexus.yaml" in c["data"])[
            "data"
        ].update({"nexus.yaml": "port: 1\n"}),
        "config",
    ),
    (
        "config elsewhere",
        "sqlite",
        lambda o: next(e for e in _container(o)["env"] if e["name"] == "NEXUS_CONFIG").update(
            value="/etc/nexus.yaml"
        ),
        "config",
    ),
    (
        "playbooks elsewhere",
        "postgresql",
        lambda o: next(e for e in _container(o)["env"] if e["name"] == "NEXUS_PLAYBOOKS").update(
            value="/playbooks"
        ),
        "config",
    ),
    (
        "Deployment in default",
        "sqlite",
        lambda o: the(o, "Deployment")["metadata"].update(namespace="default"),
        "namespace",
    ),
    (
        "Role in nexus-bot",
        "postgresql",
        lambda o: _role(o)["metadata"].update(namespace="nexus-bot"),
        "namespace",
    ),
    ("wildcard verb", "sqlite", lambda o: _role(o)["rules"][0].update(verbs=["*"]), "rbac"),
    (
        "secrets",
        "postgresql",
        lambda o: _role(o)["rules"].append(
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
        ),
        "rbac",
    ),
    ("extra verb", "sqlite", lambda o: _role(o)["rules"][0]["verbs"].append("delete"), "rbac"),
    (
        "name restriction dropped",
        "sqlite",
        lambda o: _role(o)["rules"][0].pop("resourceNames"),
        "rbac",
    ),
    (
        "ClusterRole",
        "postgresql",
        lambda o: o.append({"kind": "ClusterRole", "metadata": {"name": "x"}, "rules": []}),
        "rbac",
    ),
    (
        "binding to default",
        "sqlite",
        lambda o: of_kind(o, "RoleBinding")[0]["subjects"][0].update(namespace="default"),
        "rbac",
    ),
    ("binding removed", "postgresql", lambda o: o.remove(of_kind(o, "RoleBinding")[0]), "rbac"),
    ("Role missing", "postgresql", lambda o: o.remove(_role(o)), "rbac"),
    (
        "sqlite two replicas",
        "sqlite",
        lambda o: the(o, "Deployment")["spec"].update(replicas=2),
        "sqlite",
    ),
    (
        "sqlite rolling",
        "sqlite",
        lambda o: the(o, "Deployment")["spec"].update(strategy={"type": "RollingUpdate"}),
        "sqlite",
    ),
    ("no PVC", "sqlite", lambda o: o.remove(the(o, "PersistentVolumeClaim")), "sqlite"),
    ("data on emptyDir", "sqlite", lambda o: _data_volume(o).update(emptyDir={}), "sqlite"),
    (
        "sqlite in /tmp",
        "sqlite",
        lambda o: next(e for e in _container(o)["env"] if e["name"] == "DATABASE_URL").update(
            value="sqlite:////tmp/x.db"
        ),
        "sqlite",
    ),
    (
        "one replica",
        "postgresql",
        lambda o: the(o, "Deployment")["spec"].update(replicas=1),
        "postgresql",
    ),
    (
        "maxUnavailable 1",
        "postgresql",
        lambda o: the(o, "Deployment")["spec"]["strategy"]["rollingUpdate"].update(
            maxUnavailable=1
        ),
        "postgresql",
    ),
    (
        "Recreate",
        "postgresql",
        lambda o: the(o, "Deployment")["spec"].update(strategy={"type": "Recreate"}),
        "postgresql",
    ),
    ("no PDB", "postgresql", lambda o: o.remove(the(o, "PodDisruptionBudget")), "postgresql"),
    (
        "PDB minAvailable 0",
        "postgresql",
        lambda o: the(o, "PodDisruptionBudget")["spec"].update(minAvailable=0),
        "postgresql",
    ),
    (
        "PDB selects nothing",
        "postgresql",
        lambda o: the(o, "PodDisruptionBudget")["spec"].update(
            selector={"matchLabels": {"app": "x"}}
        ),
        "postgresql",
    ),
    ("no spread", "postgresql", lambda o: _pod(o).pop("topologySpreadConstraints"), "postgresql"),
    (
        "spread on zones only",
        "postgresql",
        lambda o: _pod(o).update(
            topologySpreadConstraints=_pod(o)["topologySpreadConstraints"][1:]
        ),
        "postgresql",
    ),
    ("no migration Job", "postgresql", lambda o: o.remove(the(o, "Job")), "postgresql"),
    (
        "Job runs serve",
        "postgresql",
        lambda o: _job_container(o).update(args=["serve"]),
        "postgresql",
    ),
    (
        "Job name behind the tag",
        "postgresql",
        lambda o: the(o, "Job")["metadata"].update(name="nexus-bot-db-upgrade-0-0-9"),
        "postgresql",
    ),
    (
        "Job without ttl",
        "postgresql",
        lambda o: the(o, "Job")["spec"].pop("ttlSecondsAfterFinished"),
        "postgresql",
    ),
    (
        "Job other image",
        "postgresql",
        lambda o: _job_container(o).update(image="postgres:16"),
        "postgresql",
    ),
    (
        "DATABASE_URL inline",
        "postgresql",
        lambda o: next(e for e in _container(o)["env"] if e["name"] == "DATABASE_URL").update(
            valueFrom={}, value="postgresql://x"
        ),
        "postgresql",
    ),
]


@pytest.mark.parametrize(
    ("overlay", "breakage", "check"),
    [
        pytest.param(overlay, breakage, check, id=name)
        for name, overlay, breakage, check in BREAKAGES
    ],
)
def test_each_check_fails_on_a_broken_copy(
    rendered: dict[str, list[Manifest]],
    overlay: str,
    breakage: Breakage,
    check: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = copy.deepcopy(rendered[overlay])
    breakage(objects)
    function = getattr(checks, f"{check}_problems")
    if check == "rbac":
        problems = function(objects, shipped_allowed(monkeypatch))
    else:
        problems = function(objects)
    assert problems != []
