"""What the Kubernetes executors share: the conflict retry and reading snapshots and objects.

Every write is guarded twice: execution re-reads the object and compares it
with the preview's snapshot (``TargetChanged`` otherwise), and the patch carries
the ``resourceVersion`` just read, so the API server refuses it (409) if anyone
changed the object in between; the bot then re-reads and re-checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client
from pydantic import ValidationError

from bot.actions.base import ActionError, TargetChanged
from bot.actions.kubernetes_client import Conflict, KubeApi
from bot.actions.registry import ActionParams

_CONFLICT_ATTEMPTS = 3
DRY_RUN_OK = "Server-side dry run passed: RBAC and admission accept this change"
P = TypeVar("P", bound=ActionParams)
T = TypeVar("T")


class KubeExecutor:
    action: str

    def __init__(self, api_client: client.ApiClient, *, request_timeout: float = 30.0) -> None:
        self._kube = KubeApi(api_client, request_timeout)

    @staticmethod
    def _retrying(what: str, attempt: Callable[[], T]) -> T:
        """Run read-check-patch again when the patch lost a race (409); the check re-runs too."""
        for _ in range(_CONFLICT_ATTEMPTS):
            try:
                return attempt()
            except Conflict:
                continue
        raise TargetChanged(f"{what} kept changing while the bot tried to update it; nothing done")


def expect_params(params: ActionParams, kind: type[P]) -> P:
    if not isinstance(params, kind):
        raise TypeError(f"expected {kind.__name__} parameters, got {type(params).__name__}")
    return params


def snapshot_field(snapshot: dict[str, Any], key: str, kind: type[T]) -> T:
    value = snapshot.get(key)
    # bool is an int in Python; a JSON true is never a replica count or a revision.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ActionError(f"the approval's preview lacks {key!r}; preview again")
    return value


def valid_params(model: type[ActionParams], params: dict[str, Any]) -> bool:
    try:
        model.model_validate(params)
    except ValidationError:
        return False
    return True


def resource_version_of(obj: dict[str, Any]) -> str | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return str(value) if value is not None else None


def generation_of(obj: dict[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


def refuse_paused(deployment: dict[str, Any], what: str, doing: str) -> None:
    # As kubectl: a paused deployment would not roll out the change; resuming is a human call.
    if (deployment.get("spec") or {}).get("paused"):
        raise ActionError(
            f"{what} is paused: cannot {doing} it; resume it first (kubectl rollout resume)"
        )
