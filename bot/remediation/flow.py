"""Request → preview → approval by a second person → exactly one execution.

Synchronous (called in a worker thread). The database enforces "exactly
once": approval is a compare-and-set from `pending`, and execution starts
with a compare-and-set from `approved` that also inserts the one execution
row a request may have (UNIQUE). Two approvers at the same moment, a click
delivered twice, or two bot replicas: one execution.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError

from bot.actions.base import ActionError, ExecutionContext, Executor, TargetChanged
from bot.actions.registry import REGISTRY, ActionParams, refusal_for
from bot.domain.playbooks import plan_step
from bot.incidents.service import IncidentService, _who
from bot.remediation.cards import approval_card, decided_card, undo_blocks
from bot.remediation.policy import judge_approval
from bot.slack.blocks import escape
from bot.slack.outbox import enqueue_thread_reply
from bot.store.models import RemediationRequest, utcnow

log = structlog.get_logger("bot.remediation")


@dataclass
class FlowAnswer:
    """What to tell the clicker, and how to redraw the card they clicked (if at all)."""

    message: str
    card: list[dict[str, Any]] | None = None
    request_id: int | None = None
    needs_input: list[str] = field(default_factory=list)
    defaults: dict[str, str] = field(default_factory=dict)


class RemediationFlow:
    def __init__(self, service: IncidentService, executors: Mapping[str, Executor]) -> None:
        self.service = service
        self.repo = service.repo
        self.settings = service.settings
        self.executors = executors

    # -- 1. request ------------------------------------------------------------

    def request(
        self,
        number: int,
        playbook_id: str,
        step_id: str,
        actor: str,
        supplied: Mapping[str, str] | None = None,
    ) -> FlowAnswer:
        """A playbook button was clicked (or its modal submitted with `supplied` values)."""
        incident = self.repo.get_incident(number)
        if incident is None:
            return FlowAnswer(f"There is no incident #{number}.")
        if incident.status == "resolved":
            return FlowAnswer(f"Incident #{number} is resolved; nothing to remediate.")
        playbook = self.service.playbooks.get(playbook_id)
        step = playbook.step(step_id) if playbook else None
        if playbook is None or step is None or step.action is None:
            return FlowAnswer(f"`{playbook_id}` has no runnable step `{step_id}`.")
        values = {**(incident.labels or {}), **(supplied or {})}
        planned = plan_step(step, values, self.settings.allowed_targets)
        if planned.refusal:
            return self._refuse(number, actor, step.title, planned.refusal)
        if planned.missing or planned.invalid:
            wanted = list(planned.missing) + [p.split(":", 1)[0] for p in planned.invalid]
            return FlowAnswer(
                "Some values are missing or invalid: "
                + "; ".join(planned.missing + planned.invalid),
                needs_input=wanted,
                defaults={k: str(v) for k, v in planned.params.items() if isinstance(v, str | int)},
            )
        return self._create(
            number, playbook_id, step_id, step.action, step.title, planned.params, actor
        )

    def request_undo(self, request_id: int, actor: str) -> FlowAnswer:
        """The "Restore N replicas" button: a new request that needs approval too."""
        execution = self.repo.execution_for(request_id)
        original = self.repo.get_remediation_request(request_id)
        undo = (execution.detail or {}).get("undo") if execution else None
        if original is None or not isinstance(undo, dict):
            return FlowAnswer("There is nothing to undo for that remediation.")
        return self._create(
            original.incident_id,
            original.playbook_id,
            f"undo-{request_id}",
            str(undo["action"]),
            str(undo["title"]),
            dict(undo["params"]),
            actor,
        )

    def _create(
        self,
        number: int,
        playbook_id: str,
        step_id: str,
        action: str,
        title: str,
        params: dict[str, Any],
        actor: str,
    ) -> FlowAnswer:
        try:
            validated = REGISTRY.get(action).params.model_validate(params)
        except ValidationError as exc:
            return FlowAnswer(f"Invalid values: {exc.errors(include_url=False)[0]['msg']}")
        refusal = refusal_for(validated.target(), self.settings.allowed_targets)
        if refusal:
            return self._refuse(number, actor, title, refusal)
        request, created = self.repo.create_remediation_request(
            incident_id=number,
            playbook_id=playbook_id,
            step_id=step_id,
            action=action,
            params=validated.model_dump(mode="json"),
            requested_by=actor,
            expires_at=utcnow() + self.settings.approvals.expire_after,
            idempotency_key=f"incident:{number}:step:{step_id}:open",
        )
        if not created:
            return FlowAnswer(
                f"*{escape(title)}* is already requested (#{request.id}, {request.state}, "
                f"by {_who(request.requested_by)}).",
                request_id=request.id,
            )
        return self._preview_and_post(request, validated, title)

    def _preview_and_post(
        self, request: RemediationRequest, params: ActionParams, title: str
    ) -> FlowAnswer:
        executor = self.executors.get(request.action)
        if executor is None:
            reason = (
                f"the bot cannot run `{request.action}` here (its credentials are not configured)"
            )
            self.repo.transition_remediation(
                request.id, {"pending"}, "refused", "nexus-bot", reason
            )
            self.service.note(
                request.incident_id, f":no_entry: Remediation #{request.id}: {reason}."
            )
            return FlowAnswer(f"Cannot run: {reason}.", request_id=request.id)
        try:
            preview = executor.preview(params)
        except ActionError as exc:
            reason = f"preview failed: {exc}"
            self.repo.transition_remediation(
                request.id, {"pending"}, "refused", "nexus-bot", reason
            )
            self.service.note(
                request.incident_id, f":warning: Remediation #{request.id}: {escape(reason)}"
            )
            return FlowAnswer(f"Not requested: {reason}", request_id=request.id)
        stored = {
            "summary": preview.summary,
            "details": preview.details,
            "snapshot": preview.snapshot,
        }
        self.repo.set_remediation_preview(request.id, stored)
        card = approval_card(
            request_id=request.id,
            requested_by=request.requested_by,
            title=title,
            summary=preview.summary,
            details=preview.details,
            expires_at=request.expires_at,
            approvers=self.settings.approvers_for(request.action),
        )
        with self.repo.session() as s:
            enqueue_thread_reply(
                s,
                request.incident_id,
                None,
                f"Remediation #{request.id} needs approval: {title}",
                card,
            )
        self.service.wake_outbox()
        return FlowAnswer(
            f"Requested #{request.id}: {preview.summary}. Waiting for a second person to approve.",
            request_id=request.id,
        )

    def _refuse(self, number: int, actor: str, title: str, reason: str) -> FlowAnswer:
        self.repo.audit(actor, "remediation.refused", number, {"step": title, "reason": reason})
        self.service.note(
            number,
            f":no_entry: {_who(actor)} asked for *{escape(title)}*: refused, {escape(reason)}.",
        )
        return FlowAnswer(f"Refused: {reason}")

    # -- 2. decide -------------------------------------------------------------

    def approve(self, request_id: int, approver: str, allowed_users: set[str]) -> FlowAnswer:
        request = self.repo.get_remediation_request(request_id)
        if request is None:
            return FlowAnswer(f"There is no remediation #{request_id}.")
        configured = bool(self.settings.approvers_for(request.action))
        verdict = judge_approval(
            approver=approver,
            requested_by=request.requested_by,
            state=request.state,
            expires_at=request.expires_at,
            now=utcnow(),
            allowed_users=allowed_users,
            configured=configured,
        )
        if not verdict.allowed:
            if verdict.decision:
                self.repo.record_approval(request_id, approver, verdict.decision, verdict.message)
            elif request.state == "pending":  # expired: say so once, for everyone
                self.expire(request)
            return FlowAnswer(verdict.message, request_id=request_id)
        if not self.repo.transition_remediation(request_id, {"pending"}, "approved", approver):
            current = self.repo.get_remediation_request(request_id)
            return FlowAnswer(f"This request is already {current.state if current else 'gone'}.")
        self.repo.record_approval(request_id, approver, "approve")
        return self._execute(request, approver)

    def deny(self, request_id: int, user: str, reason: str) -> FlowAnswer:
        request = self.repo.get_remediation_request(request_id)
        if request is None:
            return FlowAnswer(f"There is no remediation #{request_id}.")
        if not self.repo.transition_remediation(request_id, {"pending"}, "denied", user, reason):
            return FlowAnswer(f"This request is already {request.state}.")
        self.repo.record_approval(request_id, user, "deny", reason)
        title = self._title(request)
        self.service.note(
            request.incident_id,
            f":x: Remediation #{request_id} ({escape(title)}) denied by {_who(user)}: "
            f"{escape(reason)}",
        )
        card = decided_card(request_id, title, "denied", [f"Denied by <@{user}>: {escape(reason)}"])
        return FlowAnswer("Denied.", card=card, request_id=request_id)

    def expire_due(self) -> int:
        """Expire every pending request past its time; returns how many."""
        due = self.repo.due_remediation_requests(utcnow())
        return sum(1 for request in due if self.expire(request))

    def expire(self, request: RemediationRequest) -> bool:
        if not self.repo.transition_remediation(
            request.id, {"pending"}, "expired", "nexus-bot", "nobody approved in time"
        ):
            return False
        self.service.note(
            request.incident_id,
            f":hourglass: Remediation #{request.id} ({escape(self._title(request))}) expired: "
            "nobody approved it in time. Request it again if it is still needed.",
        )
        return True

    # -- 3. execute ------------------------------------------------------------

    def _execute(self, request: RemediationRequest, approver: str) -> FlowAnswer:
        title = self._title(request)
        if self.repo.start_execution(request.id, approver) is None:
            return FlowAnswer("Someone else's approval already started it.", request_id=request.id)
        executor = self.executors[request.action]
        params = REGISTRY.get(request.action).params.model_validate(request.params)
        incident = self.repo.get_incident(request.incident_id)
        context = ExecutionContext(
            incident_number=request.incident_id,
            incident_title=incident.title if incident else "",
            requested_by=request.requested_by,
            approved_by=approver,
        )
        snapshot = (request.preview or {}).get("snapshot", {})
        approved = (
            f"Approved by <@{approver}> at {utcnow():%H:%M:%S} UTC "
            f"(requested by <@{request.requested_by}>)."
        )
        try:
            result = executor.execute(params, snapshot, context)
        except TargetChanged as exc:
            return self._finish(
                request, title, "aborted", f"not run, the target changed: {exc}", approved
            )
        except ActionError as exc:
            return self._finish(request, title, "failed", f"failed: {exc}", approved)
        except Exception as exc:  # an executor bug must not leave the request "executing"
            log.exception("remediation crashed", request_id=request.id)
            return self._finish(
                request, title, "failed", f"failed unexpectedly: {type(exc).__name__}", approved
            )
        detail: dict[str, Any] = {
            "summary": result.summary,
            "details": result.details,
            "links": result.links,
            **result.data,
        }
        if result.undo is not None:
            detail["undo"] = {
                "title": result.undo.title,
                "action": result.undo.action,
                "params": result.undo.params,
            }
        self.repo.finish_execution(request.id, "succeeded", approver, detail)
        lines = [
            approved,
            f":white_check_mark: {escape(result.summary)}",
            *map(escape, result.details),
        ]
        lines += [f"<{link}>" for link in result.links]
        text = "\n".join(lines)
        self.service.note(
            request.incident_id, f"Remediation #{request.id} ({escape(title)}) done.\n{text}"
        )
        if result.undo is not None:
            with self.repo.session() as s:
                enqueue_thread_reply(
                    s,
                    request.incident_id,
                    None,
                    result.undo.title,
                    undo_blocks(request.id, result.undo.title),
                )
            self.service.wake_outbox()
        card = decided_card(request.id, title, "done", lines)
        return FlowAnswer(f"Done: {result.summary}", card=card, request_id=request.id)

    def _finish(
        self, request: RemediationRequest, title: str, outcome: str, message: str, approved: str
    ) -> FlowAnswer:
        self.repo.finish_execution(request.id, outcome, "nexus-bot", {"error": message})
        self.service.note(
            request.incident_id,
            f":warning: Remediation #{request.id} ({escape(title)}) {escape(message)}",
        )
        card = decided_card(request.id, title, outcome, [approved, escape(message)])
        return FlowAnswer(message[:1].upper() + message[1:], card=card, request_id=request.id)

    def _title(self, request: RemediationRequest) -> str:
        playbook = self.service.playbooks.get(request.playbook_id)
        step = playbook.step(request.step_id) if playbook else None
        return step.title if step else REGISTRY.get(request.action).title
