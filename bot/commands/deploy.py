"""`nexus-bot deploy rbac`: the bot's least-privilege RBAC, generated from the code.

Per namespace of `allowed_targets` that holds a Kubernetes target, a `Role`
with exactly the rules of `bot.actions.permissions.rules_for_namespaces` and a
`RoleBinding` granting it to the bot's ServiceAccount in the bot's own
namespace. Nothing cluster-wide, no wildcard, no Secret: what the executors
call and nothing more. The repository keeps the output for its shipped config
as deploy/kubernetes/rbac/rbac.yaml; `--check FILE` says (exit 1, with a diff)
when such a file no longer matches the configuration.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from bot.settings import Settings

EXIT_OK, EXIT_STALE, EXIT_USAGE = 0, 1, 2
DEFAULT_NAMESPACE = DEFAULT_SERVICE_ACCOUNT = "nexus-bot"
RBAC_API = "rbac.authorization.k8s.io/v1"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# "-actions" is appended to the ServiceAccount name for the Role and its binding.
_MAX_SERVICE_ACCOUNT = 253 - len("-actions")


def namespace_name(text: str) -> str:
    """`--namespace`: a DNS-1123 label, as Kubernetes requires of a namespace."""
    if not _DNS_LABEL.fullmatch(text):
        raise argparse.ArgumentTypeError(
            "expected a namespace name (DNS-1123 label: at most 63 lower-case letters, "
            f"digits and dashes, starting and ending with a letter or digit), got {text[:70]!r}"
        )
    return text


def service_account_name(text: str) -> str:
    """`--service-account`: a DNS-1123 subdomain short enough to name the Role after it."""
    if len(text) > _MAX_SERVICE_ACCOUNT or not _DNS_SUBDOMAIN.fullmatch(text):
        raise argparse.ArgumentTypeError(
            "expected a ServiceAccount name (DNS-1123 subdomain: lower-case letters, digits, "
            f"dashes and dots, at most {_MAX_SERVICE_ACCOUNT} characters), got {text[:70]!r}"
        )
    return text


def add_deploy_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """`deploy rbac [--namespace NS] [--service-account NAME] [--check FILE]`."""
    deploy = commands.add_parser("deploy", help="Kubernetes deployment helpers")
    deploy_commands = deploy.add_subparsers(
        dest="deploy_command", required=True, parser_class=type(deploy)
    )
    rbac = deploy_commands.add_parser(
        "rbac",
        help="print the least-privilege Roles and RoleBindings for allowed_targets (YAML)",
    )
    rbac.add_argument(
        "--namespace",
        type=namespace_name,
        default=DEFAULT_NAMESPACE,
        metavar="NS",
        help=f"the namespace the bot runs in (default {DEFAULT_NAMESPACE})",
    )
    rbac.add_argument(
        "--service-account",
        type=service_account_name,
        default=DEFAULT_SERVICE_ACCOUNT,
        metavar="NAME",
        help=f"the bot's ServiceAccount (default {DEFAULT_SERVICE_ACCOUNT})",
    )
    rbac.add_argument(
        "--check",
        type=Path,
        metavar="FILE",
        help="print nothing new: exit 1 with a diff when FILE differs from the output",
    )


def _command_line(namespace: str, service_account: str) -> str:
    words = ["nexus-bot", "deploy", "rbac"]
    if namespace != DEFAULT_NAMESPACE:
        words += ["--namespace", namespace]
    if service_account != DEFAULT_SERVICE_ACCOUNT:
        words += ["--service-account", service_account]
    return " ".join(words)


def _labels() -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "nexus-bot",
        "app.kubernetes.io/component": "rbac",
        "app.kubernetes.io/part-of": "nexus",
    }


def rbac_objects(settings: Settings, namespace: str, service_account: str) -> list[dict[str, Any]]:
    """A Role and its RoleBinding per target namespace, in namespace order."""
    from bot.actions.permissions import rules_for_namespaces

    name = f"{service_account}-actions"
    objects: list[dict[str, Any]] = []
    for target, rules in rules_for_namespaces(settings.allowed_targets).items():
        objects.append(
            {
                "apiVersion": RBAC_API,
                "kind": "Role",
                "metadata": {"name": name, "namespace": target, "labels": _labels()},
                "rules": rules,
            }
        )
        objects.append(
            {
                "apiVersion": RBAC_API,
                "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": target, "labels": _labels()},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [
                    {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
                ],
            }
        )
    return objects


def render_rbac(settings: Settings, namespace: str, service_account: str) -> str:
    """The multi-document YAML `deploy rbac` prints, header comment included."""
    header = [
        f"# Generated by `{_command_line(namespace, service_account)}` from allowed_targets",
        "# (bot/actions/permissions.py): do not edit by hand. Regenerate after changing",
        "# allowed_targets or the actions; `--check FILE` tells when this file is stale.",
        f"# The bot's ServiceAccount: {namespace}/{service_account}.",
    ]
    objects = rbac_objects(settings, namespace, service_account)
    if not objects:
        header += [
            "#",
            "# allowed_targets names no Kubernetes object (deployments, configmaps, cronjobs):",
            "# the bot needs no Role, and no Kubernetes action can run.",
        ]
        return "\n".join(header) + "\n"
    documents = [
        yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=100) for obj in objects
    ]
    return "\n".join(header) + "\n---\n" + "---\n".join(documents)


def run_deploy_rbac(
    settings: Settings, namespace: str, service_account: str, check: Path | None
) -> int:
    text = render_rbac(settings, namespace, service_account)
    if check is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        current = check.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cannot read {check}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if current == text:
        print(f"{check} is up to date", file=sys.stderr)
        return EXIT_OK
    sys.stdout.writelines(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=str(check),
            tofile="nexus-bot deploy rbac",
        )
    )
    regenerate = _command_line(namespace, service_account)
    print(f"{check} is stale: regenerate it with `{regenerate} > {check}`", file=sys.stderr)
    return EXIT_STALE
