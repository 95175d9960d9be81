"""What the rendered Kubernetes manifests must satisfy, as functions returning problems.

Each check returns a list of readable problems (empty: fine), so the tests can
assert both that the real overlays pass and that a deliberately broken copy of
them fails: every check is shown to be able to fail (test_manifest_checks.py).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bot.actions.permissions import rules_for_namespaces
from bot.settings import AllowedTargets

Manifest = dict[str, Any]

REPO_ROOT = Path(__file__).resolve().parents[3]
BOT_NAMESPACE = "nexus-bot"
SERVICE_ACCOUNT = "nexus-bot"
SECRET = "nexus-bot"
IMAGE = "ghcr.io/nexus-platform/nexus-bot"
HTTP_PORT = 3000
UID = GID = 10001
DATA_DIR = "/var/lib/nexus-bot"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet"}
RBAC_KINDS = {"Role", "RoleBinding"}
CLUSTER_WIDE_KINDS = {"ClusterRole", "ClusterRoleBinding", "Namespace"}


def project_version() -> str:
    with (REPO_ROOT / "pyproject.toml").open("rb") as fh:
        version: str = tomllib.load(fh)["project"]["version"]
    return version


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [obj for obj in objects if obj.get("kind") == kind]


def the(objects: list[Manifest], kind: str) -> Manifest:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def name_of(obj: Manifest) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def pod_template(obj: Manifest) -> Manifest:
    """The pod template of a workload: {"metadata": …, "spec": …}."""
    if obj["kind"] == "Pod":
        return obj
    if obj["kind"] == "CronJob":
        template: Manifest = obj["spec"]["jobTemplate"]["spec"]["template"]
        return template
    template = obj["spec"]["template"]
    return template


def workloads(objects: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for obj in objects:
        if obj.get("kind") in WORKLOAD_KINDS:
            yield name_of(obj), pod_template(obj)["spec"]


def all_containers(pod: Manifest) -> list[Manifest]:
    containers: list[Manifest] = [
        *pod.get("initContainers", []),
        *pod.get("containers", []),
        *pod.get("ephemeralContainers", []),
    ]
    return containers


def bot_container(deployment: Manifest) -> Manifest:
    containers = pod_template(deployment)["spec"]["containers"]
    (container,) = (c for c in containers if c["name"] == "nexus-bot")
    found: Manifest = container
    return found


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# --- every workload -----------------------------------------------------------


def pod_security_problems(objects: list[Manifest]) -> list[str]:
    """Restricted pod security, memory bounds, pinned images, on every pod template."""
    problems: list[str] = []
    found = list(workloads(objects))
    if not found:
        problems.append("no workload found")
    for where, pod in found:
        pod_sc = pod.get("securityContext", {})
        for key, want in (
            ("runAsNonRoot", True),
            ("runAsUser", UID),
            ("runAsGroup", GID),
            ("fsGroup", GID),
        ):
            if pod_sc.get(key) != want:
                problems.append(f"{where}: pod securityContext.{key} is not {want}")
        if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccompProfile is not RuntimeDefault")
        for host in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
            if pod.get(host) is True:
                problems.append(f"{where}: {host} is true")
        for volume in pod.get("volumes", []):
            if "hostPath" in volume:
                problems.append(f"{where}: volume {volume['name']} is a hostPath")
        for container in all_containers(pod):
            problems += _container_problems(f"{where}/{container['name']}", container, pod_sc)
    return problems


def _container_problems(where: str, container: Manifest, pod_sc: Manifest) -> list[str]:
    problems: list[str] = []
    sc = container.get("securityContext", {})
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
        problems.append(f"{where}: runAsNonRoot is not true")
    if sc.get("runAsUser", pod_sc.get("runAsUser")) != UID:
        problems.append(f"{where}: runs as another user than {UID}")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if sc.get("privileged") is True:
        problems.append(f"{where}: privileged")
    capabilities = sc.get("capabilities", {})
    if capabilities.get("drop") != ["ALL"] or capabilities.get("add"):
        problems.append(f"{where}: capabilities are not drop [ALL] with nothing added")
    seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
    if seccomp.get("type") != "RuntimeDefault":
        problems.append(f"{where}: seccompProfile is not RuntimeDefault")
    resources = container.get("resources", {})
    for part in ("requests", "limits"):
        if not resources.get(part, {}).get("memory"):
            problems.append(f"{where}: no memory {part[:-1]}")
    image = str(container.get("image", ""))
    name, _, tag = image.rpartition(":")
    if "@sha256:" not in image and ("/" in tag or not name or tag in ("", "latest")):
        problems.append(f"{where}: image {image!r} is not pinned to a tag")
    elif name == IMAGE and tag != project_version():
        problems.append(f"{where}: image tag {tag!r} is not the version {project_version()}")
    return problems


def secret_problems(objects: list[Manifest]) -> list[str]:
    """No Secret in the output; the bot gets its credentials from Secret nexus-bot by name."""
    problems = [f"{name_of(obj)} is in the manifests" for obj in of_kind(objects, "Secret")]
    container = bot_container(the(objects, "Deployment"))
    refs = [ref.get("secretRef", {}).get("name") for ref in container.get("envFrom", [])]
    if SECRET not in refs:
        problems.append(f"the bot does not read the Secret {SECRET!r} (envFrom secretRef)")
    for entry in container.get("env", []):
        if "value" in entry and any(w in entry["name"] for w in ("TOKEN", "SECRET", "KEY")):
            problems.append(f"credential {entry['name']} is written in the manifest")
    return problems


def probe_problems(objects: list[Manifest]) -> list[str]:
    """Liveness /healthz, readiness /readyz, startup /healthz, all on the container's port."""
    container = bot_container(the(objects, "Deployment"))
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    problems: list[str] = []
    if ports.get("http") != HTTP_PORT:
        problems.append(f"the container port named http is not {HTTP_PORT}: {ports}")
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ):
        get = container.get(probe, {}).get("httpGet", {})
        port = ports.get(get.get("port"), get.get("port"))
        if get.get("path") != path or port != HTTP_PORT:
            problems.append(f"{probe} is not GET {path} on port {HTTP_PORT}: {get}")
    return problems


def service_problems(objects: list[Manifest]) -> list[str]:
    service = the(objects, "Service")
    labels = pod_template(the(objects, "Deployment"))["metadata"]["labels"]
    problems: list[str] = []
    if service["spec"].get("type", "ClusterIP") != "ClusterIP":
        problems.append("the Service is not a ClusterIP")
    if not selects(service["spec"].get("selector", {}), labels):
        problems.append("the Service does not select the bot's pods")
    targets = [p.get("targetPort") for p in service["spec"]["ports"]]
    if not targets or any(t not in ("http", HTTP_PORT) for t in targets):
        problems.append(f"the Service targets {targets}, not the http port")
    return problems


def network_policy_problems(objects: list[Manifest]) -> list[str]:
    """Ingress to the bot only on TCP 3000 (http)."""
    labels = pod_template(the(objects, "Deployment"))["metadata"]["labels"]
    policies = [
        p
        for p in of_kind(objects, "NetworkPolicy")
        if selects(p["spec"]["podSelector"].get("matchLabels", {}), labels)
    ]
    if not policies:
        return ["no NetworkPolicy selects the bot's pods"]
    problems: list[str] = []
    for policy in policies:
        spec = policy["spec"]
        if "Ingress" not in spec.get("policyTypes", []):
            problems.append(f"{name_of(policy)} does not restrict ingress")
        for rule in spec.get("ingress", []):
            ports = rule.get("ports", [])
            if not ports:
                problems.append(f"{name_of(policy)} allows ingress on every port")
            for port in ports:
                if port.get("port") not in (HTTP_PORT, "http") or port.get("protocol", "TCP") != (
                    "TCP"
                ):
                    problems.append(f"{name_of(policy)} allows ingress to {port}")
                if "endPort" in port:
                    problems.append(f"{name_of(policy)} allows a port range {port}")
    return problems


def config_problems(objects: list[Manifest]) -> list[str]:
    """The ConfigMaps carry config/nexus.yaml and every playbook, mounted where the env says."""
    deployment = the(objects, "Deployment")
    pod = pod_template(deployment)["spec"]
    container = bot_container(deployment)
    maps = {cm["metadata"]["name"]: cm.get("data", {}) for cm in of_kind(objects, "ConfigMap")}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounted: dict[str, dict[str, str]] = {}
    for mount in container.get("volumeMounts", []):
        source = volumes.get(mount["name"], {}).get("configMap")
        if source is not None:
            mounted[mount["mountPath"]] = maps.get(source["name"], {})
    env = env_of(container)
    problems: list[str] = []
    config_path = Path(env.get("NEXUS_CONFIG", {}).get("value", ""))
    config_data = mounted.get(str(config_path.parent), {})
    wanted = (REPO_ROOT / "config" / "nexus.yaml").read_text(encoding="utf-8")
    if config_data.get(config_path.name) != wanted:
        problems.append(f"NEXUS_CONFIG {config_path} is not config/nexus.yaml from a ConfigMap")
    playbooks = mounted.get(env.get("NEXUS_PLAYBOOKS", {}).get("value", ""), {})
    shipped = sorted((REPO_ROOT / "playbooks").glob("*.yaml"))
    if not shipped:
        problems.append("no playbook in playbooks/")
    for path in shipped:
        if playbooks.get(path.name) != path.read_text(encoding="utf-8"):
            problems.append(f"NEXUS_PLAYBOOKS has no copy of playbooks/{path.name}")
    for extra in sorted(set(playbooks) - {p.name for p in shipped}):
        problems.append(f"NEXUS_PLAYBOOKS has {extra}, which playbooks/ does not")
    return problems


def rbac_problems(objects: list[Manifest], allowed: AllowedTargets) -> list[str]:
    """Roles exactly as rules_for_namespaces, bound to the bot only; nothing cluster-wide."""
    problems = [f"{name_of(o)} is cluster-wide" for o in objects if o["kind"] in CLUSTER_WIDE_KINDS]
    roles = {r["metadata"].get("namespace"): r for r in of_kind(objects, "Role")}
    expected = rules_for_namespaces(allowed)
    if not expected:
        problems.append("the allow-list has no Kubernetes target: nothing to compare with")
    if len(roles) != len(of_kind(objects, "Role")):
        problems.append("more than one Role in a namespace")
    if set(roles) != set(expected):
        problems.append(f"Roles in {sorted(map(str, roles))}, expected {sorted(expected)}")
    for namespace, role in roles.items():
        if role.get("rules") != expected.get(namespace):
            problems.append(f"Role in {namespace} has other rules than rules_for_namespaces")
        for rule in role.get("rules", []):
            flat = [*rule.get("apiGroups", []), *rule.get("resources", []), *rule["verbs"]]
            if any("*" in item for item in flat):
                problems.append(f"Role in {namespace} has a wildcard: {rule}")
            if any(r.split("/")[0] == "secrets" for r in rule.get("resources", [])):
                problems.append(f"Role in {namespace} reaches secrets: {rule}")
            if rule.get("nonResourceURLs"):
                problems.append(f"Role in {namespace} has nonResourceURLs")
    bindings = of_kind(objects, "RoleBinding")
    bound = set()
    for binding in bindings:
        namespace = binding["metadata"].get("namespace")
        role = roles.get(namespace)
        ref = binding["roleRef"]
        if role is None or ref.get("kind") != "Role" or ref["name"] != role["metadata"]["name"]:
            problems.append(f"RoleBinding in {namespace} does not bind that namespace's Role")
        else:
            bound.add(namespace)
        subject = {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": BOT_NAMESPACE}
        if binding.get("subjects") != [subject]:
            problems.append(f"RoleBinding in {namespace} binds {binding.get('subjects')}")
    for namespace in sorted(set(roles) - bound):
        problems.append(f"the Role in {namespace} is bound to nobody")
    return problems


def namespace_problems(objects: list[Manifest]) -> list[str]:
    """The bot's objects in nexus-bot; only its RBAC in the target namespaces."""
    problems: list[str] = []
    for obj in objects:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in RBAC_KINDS:
            if namespace in (None, BOT_NAMESPACE):
                problems.append(f"{name_of(obj)} is in {namespace}, not a target namespace")
        elif obj["kind"] not in CLUSTER_WIDE_KINDS and namespace != BOT_NAMESPACE:
            problems.append(f"{name_of(obj)} is in {namespace}, not {BOT_NAMESPACE}")
    return problems


# --- per overlay --------------------------------------------------------------


def sqlite_problems(objects: list[Manifest]) -> list[str]:
    """One replica, Recreate, the data directory on a PersistentVolumeClaim, SQLite there."""
    deployment = the(objects, "Deployment")
    spec = deployment["spec"]
    problems: list[str] = []
    if spec.get("replicas") != 1:
        problems.append(f"replicas is {spec.get('replicas')}, not 1")
    if spec.get("strategy", {}).get("type") != "Recreate":
        problems.append("the strategy is not Recreate")
    claims = {c["metadata"]["name"] for c in of_kind(objects, "PersistentVolumeClaim")}
    volume = _volume_at(deployment, DATA_DIR)
    claim = (volume or {}).get("persistentVolumeClaim", {}).get("claimName")
    if claim is None or claim not in claims or "emptyDir" in (volume or {}):
        problems.append(f"{DATA_DIR} is not the PersistentVolumeClaim of the overlay")
    url = env_of(bot_container(deployment)).get("DATABASE_URL", {}).get("value", "")
    if not url.startswith(f"sqlite:///{DATA_DIR}/"):
        problems.append(f"DATABASE_URL {url!r} is not a SQLite file in {DATA_DIR}")
    return problems


def _volume_at(workload: Manifest, path: str) -> Manifest | None:
    pod = pod_template(workload)["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for container in pod["containers"]:
        for mount in container.get("volumeMounts", []):
            if mount["mountPath"] == path:
                volume: Manifest | None = volumes.get(mount["name"])
                return volume
    return None


def postgresql_problems(objects: list[Manifest]) -> list[str]:
    """Two replicas, zero-downtime rollout, a PDB, spread on nodes, migrations run first."""
    deployment = the(objects, "Deployment")
    spec = deployment["spec"]
    labels = pod_template(deployment)["metadata"]["labels"]
    pod = pod_template(deployment)["spec"]
    problems: list[str] = []
    if spec.get("replicas") != 2:
        problems.append(f"replicas is {spec.get('replicas')}, not 2")
    strategy = spec.get("strategy", {})
    rolling = strategy.get("rollingUpdate", {})
    if strategy.get("type") != "RollingUpdate" or (
        rolling.get("maxUnavailable"),
        rolling.get("maxSurge"),
    ) != (0, 1):
        problems.append(
            f"the strategy is not RollingUpdate maxUnavailable 0 maxSurge 1: {strategy}"
        )
    pdbs = [
        p
        for p in of_kind(objects, "PodDisruptionBudget")
        if selects(p["spec"].get("selector", {}).get("matchLabels", {}), labels)
    ]
    if [p["spec"].get("minAvailable") for p in pdbs] != [1]:
        problems.append("no PodDisruptionBudget with minAvailable 1 selects the bot's pods")
    if not _spread_on_hostname(pod, labels):
        problems.append("the replicas are not spread across kubernetes.io/hostname")
    database = env_of(bot_container(deployment)).get("DATABASE_URL", {})
    if database.get("valueFrom", {}).get("secretKeyRef", {}).get("name") != SECRET:
        problems.append("the bot's DATABASE_URL does not come from the Secret")
    problems += _migration_problems(objects)
    return problems


def _spread_on_hostname(pod: Manifest, labels: dict[str, str]) -> bool:
    for constraint in pod.get("topologySpreadConstraints", []):
        if (
            constraint.get("topologyKey") == "kubernetes.io/hostname"
            and constraint.get("maxSkew") == 1
            and constraint.get("whenUnsatisfiable") == "DoNotSchedule"
            and selects(constraint.get("labelSelector", {}).get("matchLabels", {}), labels)
        ):
            return True
    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution", []) + [
        t["podAffinityTerm"]
        for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])
    ]
    return any(
        t.get("topologyKey") == "kubernetes.io/hostname"
        and selects(t.get("labelSelector", {}).get("matchLabels", {}), labels)
        for t in terms
    )


def _migration_problems(objects: list[Manifest]) -> list[str]:
    """A Job running `nexus-bot db upgrade` with DATABASE_URL from the Secret, per version."""
    jobs = [
        job
        for job in of_kind(objects, "Job")
        if any(c.get("args") == ["db", "upgrade"] for c in pod_template(job)["spec"]["containers"])
    ]
    if len(jobs) != 1:
        return [f"expected one Job running `db upgrade`, found {len(jobs)}"]
    job = jobs[0]
    problems: list[str] = []
    spec = job["spec"]
    if not isinstance(spec.get("backoffLimit"), int) or not spec.get("ttlSecondsAfterFinished"):
        problems.append("the migration Job has no backoffLimit or ttlSecondsAfterFinished")
    if pod_template(job)["spec"].get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append("the migration Job's restartPolicy is not Never or OnFailure")
    wanted_name = "nexus-bot-db-upgrade-" + project_version().replace(".", "-")
    if job["metadata"]["name"] != wanted_name:
        problems.append(f"the migration Job is {job['metadata']['name']}, not {wanted_name}")
    (container,) = pod_template(job)["spec"]["containers"]
    deployment_image = bot_container(the(objects, "Deployment"))["image"]
    if container["image"] != deployment_image:
        problems.append("the migration Job runs another image than the Deployment")
    database = env_of(container).get("DATABASE_URL", {})
    if database.get("valueFrom", {}).get("secretKeyRef", {}).get("name") != SECRET:
        problems.append("the migration Job's DATABASE_URL does not come from the Secret")
    return problems
