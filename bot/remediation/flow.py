"""Request → preview → approval by a second person → exactly one execution.

Synchronous (called in a worker thread). The database enforces "exactly
once": approval is a compare-and-set from `pending`, and execution starts
with a compare-and-set from `approved` that also inserts the one execution
row a request may have (UNIQUE). Two approvers at the same moment, a click
delivered twice, or two bot replicas: one execution.

Every step is a timeline event in the transaction of its state change
(requested with its preview, refused, denied, expired, done, failed); the
outputs render them (the Slack output posts the approval card and edits it
when the request expires). Previews and executions talk to git, GitHub and
Kubernetes, so they run between transactions, never inside one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from pydantic import ValidationError

from bot.actions.base import ActionError, ActionFailed, ExecutionContext, Executor, TargetChanged
from bot.actions.registry import REGISTRY, ActionParams, refusal_for_params
from bot.domain.playbooks import LoadedPlaybooks, plan_step
from bot.remediation.answers import Decided, FlowAnswer
from bot.remediation.outcome_facts import (
    drill_failure_facts,
    rehearsal_facts,
    undone_request,
    verify_lines,
)
from bot.remediation.policy import judge_approval
from bot.remediation.verify import verify_after
from bot.settings import Settings
from bot.store.models import RemediationRequest, utcnow
from bot.store.repository import Repository
from bot.timeline.events import Kind
from bot.timeline.recorder import Timeline

log = structlog.get_logger("bot.remediation")


class RemediationFlow:
    def __init__(
        self,
        settings: Settings,
        repo: Repository,
        playbooks: LoadedPlaybooks,
        timeline: Timeline,
        executors: Mapping[str, Executor],
        rehearsals: Mapping[str, Executor] | None = None,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.playbooks = playbooks
        self.timeline = timeline
        self.executors = executors
        # A drill incident's requests run these instead: nothing real changes
        # (dry runs, throwaway branches, permission checks; bot/actions/rehearsal.py).
        self.rehearsals = rehearsals or {}

    def _is_drill(self, incident_id: int) -> bool:
        incident = self.repo.get_incident(incident_id)
        return incident is not None and incident.drill_run_id is not None

    def _executors_for(self, incident_id: int) -> Mapping[str, Executor]:
        return self.rehearsals if self._is_drill(incident_id) else self.executors

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
        playbook = self.playbooks.get(playbook_id)
        step = playbook.step(step_id) if playbook else None
        if playbook is None or step is None or step.action is None:
            return FlowAnswer(f"`{playbook_id}` has no runnable step `{step_id}`.")
        values = {**(incident.labels or {}), **(supplied or {})}
        planned = plan_step(step, values, self.settings.allowed_targets)
        if planned.refusal:
            return self._refuse(number, actor, step.title, planned.refusal, step_id)
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
        refusal = refusal_for_params(validated, self.settings.allowed_targets)
        if refusal:
            return self._refuse(number, actor, title, refusal, step_id)
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
                f"{title} is already requested (#{request.id}, {request.state}, "
                f"by {request.requested_by}).",
                request_id=request.id,
            )
        return self._preview_and_post(request, validated, title)

    def _preview_and_post(
        self, request: RemediationRequest, params: ActionParams, title: str
    ) -> FlowAnswer:
        executor = self._executors_for(request.incident_id).get(request.action)
        if executor is None:
            reason = (
                f"the bot cannot run `{request.action}` here (its credentials are not configured)"
            )
            self._refused_request(request, title, reason, stage="executor")
            return FlowAnswer(f"Cannot run: {reason}.", request_id=request.id)
        try:
            preview = executor.preview(params)
        except ActionError as exc:
            reason = f"preview failed: {exc}"
            self._refused_request(request, title, reason, stage="preview")
            return FlowAnswer(f"Not requested: {reason}", request_id=request.id)
        stored = {
            "summary": preview.summary,
            "details": preview.details,
            "snapshot": preview.snapshot,
        }
        with self.repo.session() as s:
            if self.repo.set_remediation_preview(request.id, stored, session=s):
                self.timeline.record(
                    s,
                    request.incident_id,
                    Kind.REMEDIATION_REQUESTED,
                    request.requested_by,
                    request_id=request.id,
                    title=title,
                    action=request.action,
                    summary=preview.summary,
                    details=list(preview.details),
                    expires_at=request.expires_at.isoformat(),
                    approvers=self.settings.approvers_for(request.action),
                    requested_by=request.requested_by,
                    step_id=request.step_id,
                )
        return FlowAnswer(
            f"Requested #{request.id}: {preview.summary}. Waiting for a second person to approve.",
            request_id=request.id,
        )

    def _refused_request(
        self, request: RemediationRequest, title: str, reason: str, stage: str
    ) -> None:
        with self.repo.session() as s:
            if self.repo.transition_remediation(
                request.id, {"pending"}, "refused", "nexus-bot", reason, session=s
            ):
                self.timeline.record(
                    s,
                    request.incident_id,
                    Kind.REMEDIATION_REFUSED,
                    "nexus-bot",
                    request_id=request.id,
                    title=title,
                    reason=reason,
                    stage=stage,
                    step_id=request.step_id,
                )

    def _refuse(
        self, number: int, actor: str, title: str, reason: str, step_id: str | None = None
    ) -> FlowAnswer:
        with self.repo.session() as s:
            self.timeline.record(
                s,
                number,
                Kind.REMEDIATION_REFUSED,
                actor,
                request_id=None,
                title=title,
                reason=reason,
                stage="target",
                step_id=step_id,
            )
        self.repo.audit(actor, "remediation.refused", number, {"step": title, "reason": reason})
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
        with self.repo.session() as s:
            moved = self.repo.transition_remediation(
                request_id, {"pending"}, "approved", approver, session=s
            )
            if moved:
                self.repo.record_approval(request_id, approver, "approve", session=s)
                self.timeline.record(
                    s,
                    request.incident_id,
                    Kind.REMEDIATION_APPROVED,
                    approver,
                    request_id=request_id,
                    title=self._title(request),
                    requested_by=request.requested_by,
                )
        if not moved:
            current = self.repo.get_remediation_request(request_id)
            return FlowAnswer(f"This request is already {current.state if current else 'gone'}.")
        return self._execute(request, approver)

    def deny(self, request_id: int, user: str, reason: str) -> FlowAnswer:
        request = self.repo.get_remediation_request(request_id)
        if request is None:
            return FlowAnswer(f"There is no remediation #{request_id}.")
        title = self._title(request)
        with self.repo.session() as s:
            moved = self.repo.transition_remediation(
                request_id, {"pending"}, "denied", user, reason, session=s
            )
            if moved:
                self.repo.record_approval(request_id, user, "deny", reason, session=s)
                self.timeline.record(
                    s,
                    request.incident_id,
                    Kind.REMEDIATION_DENIED,
                    user,
                    request_id=request_id,
                    title=title,
                    reason=reason,
                )
        if not moved:
            return FlowAnswer(f"This request is already {request.state}.")
        decided = Decided(request_id, title, "denied", request.requested_by, user, reason=reason)
        return FlowAnswer("Denied.", decided=decided, request_id=request_id)

    def expire_due(self) -> int:
        """Expire every pending request past its time; returns how many."""
        due = self.repo.due_remediation_requests(utcnow())
        return sum(1 for request in due if self.expire(request))

    def expire(self, request: RemediationRequest) -> bool:
        with self.repo.session() as s:
            if not self.repo.transition_remediation(
                request.id,
                {"pending"},
                "expired",
                "nexus-bot",
                "nobody approved in time",
                session=s,
            ):
                return False
            self.timeline.record(
                s,
                request.incident_id,
                Kind.REMEDIATION_EXPIRED,
                "nexus-bot",
                request_id=request.id,
                title=self._title(request),
                requested_by=request.requested_by,
            )
        return True

    # -- 3. execute ------------------------------------------------------------

    def _execute(self, request: RemediationRequest, approver: str) -> FlowAnswer:
        title = self._title(request)
        if self.repo.start_execution(request.id, approver) is None:
            return FlowAnswer("Someone else's approval already started it.", request_id=request.id)
        incident = self.repo.get_incident(request.incident_id)
        drill = incident is not None and incident.drill_run_id is not None
        executors = self.rehearsals if drill else self.executors
        executor = executors.get(request.action)
        params = REGISTRY.get(request.action).params.model_validate(request.params)
        context = ExecutionContext(
            incident_number=request.incident_id,
            incident_title=incident.title if incident else "",
            requested_by=request.requested_by,
            approved_by=approver,
            drill_branch=f"drill/{request.incident_id}-{request.step_id}" if drill else None,
            request_id=request.id,
        )
        snapshot = (request.preview or {}).get("snapshot", {})
        approved_at = f"{utcnow():%H:%M:%S}"
        try:
            if executor is None:  # its credentials went away since the preview
                raise ActionError(f"the bot cannot run `{request.action}` here")
            result = executor.execute(params, snapshot, context)
        except TargetChanged as exc:
            return self._finish(
                request,
                title,
                approver,
                approved_at,
                "aborted",
                f"not run, the target changed: {exc}",
                drill=drill,
            )
        except ActionError as exc:
            # A rehearsal's error already says "Would not have worked: …".
            said = str(exc) if drill else f"failed: {exc}"
            printed = exc.details if isinstance(exc, ActionFailed) else []
            return self._finish(
                request, title, approver, approved_at, "failed", said, printed, drill=drill
            )
        except Exception as exc:  # an executor bug must not leave the request "executing"
            log.exception("remediation crashed", request_id=request.id)
            return self._finish(
                request,
                title,
                approver,
                approved_at,
                "failed",
                f"failed unexpectedly: {type(exc).__name__}",
                drill=drill,
            )
        verified = verify_after(
            self.playbooks,
            request.playbook_id,
            request.step_id,
            (incident.labels or {}) if incident else {},
            self.settings.allowed_targets,
            executors,
            context,
        )
        detail: dict[str, Any] = {
            "summary": result.summary,
            "details": result.details,
            "links": result.links,
            **result.data,
        }
        if verified is not None:
            detail["verify"] = verified.facts()
        if result.undo is not None:
            detail["undo"] = {
                "title": result.undo.title,
                "action": result.undo.action,
                "params": result.undo.params,
            }
        with self.repo.session() as s:
            self.repo.finish_execution(request.id, "succeeded", approver, detail, session=s)
            self.timeline.record(
                s,
                request.incident_id,
                Kind.REMEDIATION_DONE,
                approver,
                request_id=request.id,
                title=title,
                requested_by=request.requested_by,
                approved_by=approver,
                approved_at=approved_at,
                summary=result.summary,
                details=list(result.details),
                links=list(result.links),
                undo_title=result.undo.title if result.undo is not None else None,
                undoes=undone_request(request.step_id),
                verify=verified.facts() if verified is not None else None,
                **rehearsal_facts(result.data, drill, params),
            )
        decided = Decided(
            request.id,
            title,
            "done",
            request.requested_by,
            approver,
            summary=result.summary,
            details=list(result.details) + verify_lines(verified),
            links=list(result.links),
            at=approved_at,
            rehearsal=drill,
        )
        return FlowAnswer(f"Done: {result.summary}", decided=decided, request_id=request.id)

    def _finish(
        self,
        request: RemediationRequest,
        title: str,
        approver: str,
        approved_at: str,
        outcome: str,
        message: str,
        printed: list[str] | None = None,
        *,
        drill: bool,
    ) -> FlowAnswer:
        with self.repo.session() as s:
            self.repo.finish_execution(
                request.id, outcome, "nexus-bot", {"error": message, "output": printed}, session=s
            )
            self.timeline.record(
                s,
                request.incident_id,
                Kind.REMEDIATION_FAILED,
                "nexus-bot",
                request_id=request.id,
                title=title,
                requested_by=request.requested_by,
                approved_by=approver,
                approved_at=approved_at,
                outcome=outcome,
                message=message,
                details=list(printed or []),  # what a failed Job printed, say
                **drill_failure_facts(drill),
            )
        decided = Decided(
            request.id,
            title,
            outcome,
            request.requested_by,
            approver,
            reason=message,
            at=approved_at,
            rehearsal=drill,
        )
        return FlowAnswer(message[:1].upper() + message[1:], decided=decided, request_id=request.id)

    def _title(self, request: RemediationRequest) -> str:
        playbook = self.playbooks.get(request.playbook_id)
        step = playbook.step(request.step_id) if playbook else None
        return step.title if step else REGISTRY.get(request.action).title


__all__ = ["Decided", "FlowAnswer", "RemediationFlow"]
