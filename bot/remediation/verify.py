"""A step's `verify:` step, run once the step succeeded (e.g. the validation Job
after a restore), under the same approval, reported with the step's result.

The verify step is planned from the incident's labels like any step, checked
against the allow-list, previewed and executed by the same executors (the
rehearsal ones in a drill). Its failure does not undo the step: it is told in
the same card and thread reply, so the humans decide what next.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError

from bot.actions.base import ActionError, ActionFailed, ExecutionContext, Executor
from bot.actions.registry import REGISTRY, refusal_for_params
from bot.domain.playbooks import LoadedPlaybooks, plan_step
from bot.settings import AllowedTargets

log = structlog.get_logger("bot.remediation.verify")


@dataclass(frozen=True)
class Verification:
    step_id: str
    title: str
    ok: bool
    summary: str
    details: list[str] = field(default_factory=list)

    def facts(self) -> dict[str, Any]:
        return asdict(self)


def verify_after(
    playbooks: LoadedPlaybooks,
    playbook_id: str,
    step_id: str,
    labels: Mapping[str, str],
    allowed: AllowedTargets,
    executors: Mapping[str, Executor],
    context: ExecutionContext,
) -> Verification | None:
    """Run the verify step of `step_id`, if it names one; None when it does not."""
    playbook = playbooks.get(playbook_id)
    step = playbook.step(step_id) if playbook else None
    check = playbook.step(step.verify) if playbook and step and step.verify else None
    if check is None or check.action is None:
        return None

    def failed(reason: str, details: list[str] | None = None) -> Verification:
        return Verification(check.id, check.title, False, reason, details or [])

    planned = plan_step(check, labels, allowed)
    if planned.refusal:
        return failed(f"not run: {planned.refusal}")
    if planned.missing or planned.invalid:
        return failed("not run: " + "; ".join([*planned.missing, *planned.invalid]))
    try:
        params = REGISTRY.get(check.action).params.model_validate(planned.params)
    except ValidationError as exc:
        return failed(f"not run: {exc.errors(include_url=False)[0]['msg']}")
    refusal = refusal_for_params(params, allowed)
    if refusal:
        return failed(f"not run: {refusal}")
    executor = executors.get(check.action)
    if executor is None:
        return failed(f"not run: the bot cannot run `{check.action}` here")
    try:
        preview = executor.preview(params)
        result = executor.execute(params, preview.snapshot, context)
    except ActionFailed as exc:
        return failed(str(exc), exc.details)
    except ActionError as exc:
        return failed(str(exc))
    except Exception as exc:  # a verify bug must not hide that the step itself succeeded
        log.exception("verify step crashed", step=check.id)
        return failed(f"failed unexpectedly: {type(exc).__name__}")
    return Verification(check.id, check.title, True, result.summary, list(result.details))
