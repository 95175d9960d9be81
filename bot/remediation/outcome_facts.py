"""Facts a remediation's outcome adds to its timeline event: the rehearsal's checks
in a drill, the verify step's result, the request an undo undid."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.actions.registry import ActionParams
from bot.remediation.verify import Verification


def verify_lines(verified: Verification | None) -> list[str]:
    if verified is None:
        return []
    verdict = "passed" if verified.ok else "FAILED"
    return [f"Verification ({verified.title}) {verdict}: {verified.summary}", *verified.details]


def drill_failure_facts(drill: bool) -> dict[str, Any]:
    return {"rehearsal": True} if drill else {}


def rehearsal_facts(data: Mapping[str, Any], drill: bool, params: ActionParams) -> dict[str, Any]:
    """A drill's result says it was rehearsed and what the rehearsal verified."""
    if not drill:
        return {}
    # Checked by the flow before the executor ran; the executor adds its own.
    checks = [
        *(f"{target} is allow-listed" for target in params.targets()),
        "preview fetched and shown to the approver",
        *(str(c) for c in data.get("checks") or []),
    ]
    return {"rehearsal": True, "checks": checks}


def undone_request(step_id: str) -> int | None:
    """An undo request's step is `undo-<request id>`: the request it undoes."""
    prefix, _, number = step_id.partition("-")
    return int(number) if prefix == "undo" and number.isdecimal() else None
