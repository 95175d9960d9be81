"""The permissions each action needs, declared next to the actions: least-privilege RBAC.

`KUBE_RULES` is exactly what the Kubernetes executors call through
`bot.actions.kubernetes_client.KubeApi` (preview, execution and rehearsal
together); tests/unit/actions/test_permissions.py runs every executor against
the fake API server and fails on any call not declared here and on any declared
verb no call uses, so the list cannot drift from the code. Server-side dry runs
(previews, rehearsals) are authorized like the real call, with the same verb, so
they need nothing more.

`rules_for_namespaces` turns it into the rules of one Role per namespace of the
allow-list, restricted by ``resourceNames`` wherever the allow-list names the
objects. `NON_KUBE_NEEDS` says in words what the other actions need from GitHub
and S3, whose permissions are not per-object rules.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import bot.actions.catalog  # noqa: F401  (registers the actions: "registered" below means these)
from bot.actions.registry import REGISTRY
from bot.settings import AllowedTargets

# The order verbs are listed in, in rules and in the table: reads before writes.
_VERB_ORDER = ("get", "list", "watch", "create", "update", "patch", "delete")


@dataclass(frozen=True)
class KubeRule:
    """One RBAC rule an action needs in the namespace of its target."""

    api_group: str  # "" is the core group
    resource: str  # as RBAC names it, subresources included: "deployments/scale", "pods/log"
    verbs: tuple[str, ...]
    # The allow-list entries ("deployments", "configmaps", "cronjobs") whose names
    # may go into resourceNames; None when the names are not known in advance.
    names_from: str | None


KUBE_RULES: dict[str, tuple[KubeRule, ...]] = {
    # Reads and patches the scale subresource only: `patch deployments` is not needed.
    "k8s.scale": (KubeRule("apps", "deployments/scale", ("get", "patch"), "deployments"),),
    "k8s.rollout_restart": (KubeRule("apps", "deployments", ("get", "patch"), "deployments"),),
    "k8s.rollout_undo": (
        KubeRule("apps", "deployments", ("get", "patch"), "deployments"),
        # The old pod templates live in the deployment's ReplicaSets, found by its
        # label selector: a list, whose objects' names (pod-template hashes) nobody knows.
        KubeRule("apps", "replicasets", ("list",), None),
    ),
    "k8s.configmap_patch": (KubeRule("", "configmaps", ("get", "patch"), "configmaps"),),
    "k8s.run_job": (
        KubeRule("batch", "cronjobs", ("get",), "cronjobs"),
        # The Job's name is derived from the request (ssot-sync-nexus-12), so not
        # known when the Role is written; RBAC cannot restrict a create by name anyway.
        # get: following the Job, and checking a Job of that name is this request's.
        KubeRule("batch", "jobs", ("get", "create"), None),
        # The Job's pods (label job-name=...) for the exit code, then the newest one's log.
        KubeRule("", "pods", ("list",), None),
        KubeRule("", "pods/log", ("get",), None),
    ),
}

_GIT_PUSH = (
    "GitHub: push to the repository (contents: write), also used by rehearsals to push and "
    "delete their drill branch; pull_requests: write to open a pull request when the step "
    "asks for one (mode: pull_request) or the push to the branch is refused"
)

NON_KUBE_NEEDS: dict[str, str] = {
    "git.revert": _GIT_PUSH,
    "git.restore_path": _GIT_PUSH,
    "git.restore_archive": _GIT_PUSH,
    "github.close_pr": (
        "GitHub: pull_requests: write on the repository (read the pull request, close it); "
        "the comment goes through the issues API, which pull_requests: write or "
        "issues: write allows"
    ),
    "s3.restore_snapshot": (
        "S3: s3:ListBucket on the bucket (listing snapshots and their files, under the "
        "prefix) and s3:GetObject on `<bucket>/<prefix>*`; plus the git needs: "
        + _GIT_PUSH.removeprefix("GitHub: ")
    ),
}


def _allow_listed(allowed: AllowedTargets, kind: str) -> list[str]:
    entries: list[str] = getattr(allowed, kind)
    return entries


def _names_by_namespace(allowed: AllowedTargets, kind: str) -> dict[str, list[str]]:
    """``namespace/name`` entries of one allow-list, as namespace → sorted names."""
    names: dict[str, set[str]] = defaultdict(set)
    for entry in _allow_listed(allowed, kind):
        namespace, name = entry.split("/", 1)
        names[namespace].add(name)
    return {ns: sorted(found) for ns, found in names.items()}


def _ordered(verbs: set[str]) -> list[str]:
    return sorted(verbs, key=lambda v: (_VERB_ORDER.index(v) if v in _VERB_ORDER else 99, v))


def rules_for_namespaces(allowed: AllowedTargets) -> dict[str, list[dict[str, Any]]]:
    """Per namespace of the allow-list, the rules of its Role, as Kubernetes writes them.

    Each rule is ``{"apiGroups": [...], "resources": [...], "verbs": [...]}``
    plus ``"resourceNames"`` when the allow-list names the objects. An action
    counts in a namespace only if the allow-list has one of its targets there:
    its unrestricted rules (``list replicasets``, ``create jobs``) are not
    granted where it can do nothing. Rules on the same objects are merged.
    """
    by_kind = {
        kind: _names_by_namespace(allowed, kind)
        for kind in {r.names_from for rules in KUBE_RULES.values() for r in rules if r.names_from}
    }
    namespaces = sorted({ns for names in by_kind.values() for ns in names})
    result: dict[str, list[dict[str, Any]]] = {}
    for ns in namespaces:
        # (group, resource, resourceNames or () for all) → verbs
        merged: dict[tuple[str, str, tuple[str, ...]], set[str]] = defaultdict(set)
        for action, rules in KUBE_RULES.items():
            if action not in REGISTRY:
                continue
            kinds = {r.names_from for r in rules if r.names_from}
            if not all(by_kind[kind].get(ns) for kind in kinds):
                continue  # no target of this action in this namespace
            for rule in rules:
                # A list (replicasets, pods) cannot be restricted by name: the
                # authorizer sees a request for the whole collection, with no name,
                # so a rule with resourceNames would never match it. The same holds
                # for create: the new object's name is not part of the authorization.
                names = tuple(by_kind[rule.names_from][ns]) if rule.names_from else ()
                merged[(rule.api_group, rule.resource, names)].update(rule.verbs)
        rules_out: list[dict[str, Any]] = []
        for (group, resource, names), verbs in sorted(merged.items()):
            rule_dict: dict[str, Any] = {
                "apiGroups": [group],
                "resources": [resource],
                "verbs": _ordered(verbs),
            }
            if names:
                rule_dict["resourceNames"] = list(names)
            rules_out.append(rule_dict)
        if rules_out:
            result[ns] = rules_out
    return result


def markdown_table() -> str:
    """The README's table: one row per Kubernetes rule, then the other actions' needs."""
    rows = [
        "| action | API group | resource | verbs | restricted to |",
        "| --- | --- | --- | --- | --- |",
    ]
    for action, rules in KUBE_RULES.items():
        for rule in rules:
            group = f"`{rule.api_group}`" if rule.api_group else 'core (`""`)'
            restricted = (
                f"allowed_targets.{rule.names_from} (resourceNames)"
                if rule.names_from
                else "any name in the namespace"
            )
            verbs = ", ".join(rule.verbs)
            rows.append(f"| `{action}` | {group} | `{rule.resource}` | {verbs} | {restricted} |")
    rows.append("")
    rows.append("| action | needs |")
    rows.append("| --- | --- |")
    for action, needs in NON_KUBE_NEEDS.items():
        rows.append(f"| `{action}` | {needs} |")
    return "\n".join(rows) + "\n"
