"""Remediation requests: create, preview, compare-and-set transitions, votes, executions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.store.audit import append_audit
from bot.store.models import (
    EXECUTION_OUTCOMES,
    REMEDIATION_STATES,
    RemediationApproval,
    RemediationExecution,
    RemediationRequest,
    utcnow,
)
from bot.store.repository_base import (
    DECISION_STATES,
    FINAL_STATES,
    RepositoryBase,
    rowcount,
)


class RemediationStore(RepositoryBase):
    # -- remediation -------------------------------------------------------

    def create_remediation_request(
        self,
        incident_id: int,
        playbook_id: str,
        step_id: str,
        action: str,
        params: dict[str, Any],
        requested_by: str,
        expires_at: datetime,
        idempotency_key: str | None = None,
        now: datetime | None = None,
    ) -> tuple[RemediationRequest, bool]:
        """Return (request, created); the same idempotency_key always yields one request."""
        now = now or utcnow()

        def attempt(s: Session) -> tuple[RemediationRequest, bool]:
            if idempotency_key is not None:
                existing = s.scalars(
                    sa.select(RemediationRequest).where(
                        RemediationRequest.idempotency_key == idempotency_key
                    )
                ).one_or_none()
                if existing is not None:
                    return existing, False
            request = RemediationRequest(
                incident_id=incident_id,
                playbook_id=playbook_id,
                step_id=step_id,
                action=action,
                params=dict(params),
                requested_by=requested_by,
                state="pending",
                created_at=now,
                expires_at=expires_at,
                idempotency_key=idempotency_key,
            )
            s.add(request)
            s.flush()
            detail = {
                "request_id": request.id,
                "playbook_id": playbook_id,
                "step_id": step_id,
                "action": action,
                "params": request.params,
            }
            append_audit(s, requested_by, "remediation.requested", incident_id, detail, at=now)
            return request, True

        return self._retry_on_conflict(attempt)

    def get_remediation_request(self, request_id: int) -> RemediationRequest | None:
        with self._read() as s:
            return s.get(RemediationRequest, request_id)

    def set_remediation_preview(
        self, request_id: int, preview: dict[str, Any], session: Session | None = None
    ) -> bool:
        """Store what the approval card shows; only while the request is pending."""
        stmt = (
            sa.update(RemediationRequest)
            .where(RemediationRequest.id == request_id, RemediationRequest.state == "pending")
            .values(preview=preview)
        )
        with self._joined(session) as s:
            return rowcount(s.execute(stmt.execution_options(synchronize_session=False))) == 1

    def due_remediation_requests(self, now: datetime, limit: int = 100) -> list[RemediationRequest]:
        """Pending requests past their expiry."""
        with self._read() as s:
            query = (
                sa.select(RemediationRequest)
                .where(RemediationRequest.state == "pending", RemediationRequest.expires_at <= now)
                .order_by(RemediationRequest.id)
                .limit(limit)
            )
            return list(s.scalars(query))

    def execution_for(self, request_id: int) -> RemediationExecution | None:
        with self._read() as s:
            return s.scalars(
                sa.select(RemediationExecution).where(RemediationExecution.request_id == request_id)
            ).one_or_none()

    def transition_remediation(
        self,
        request_id: int,
        from_states: set[str],
        to_state: str,
        actor: str,
        reason: str | None = None,
        now: datetime | None = None,
        session: Session | None = None,
    ) -> bool:
        """Compare-and-set the request state; True only for the caller that moved it."""
        if to_state not in REMEDIATION_STATES:
            raise ValueError(f"unknown remediation state {to_state!r}")
        now = now or utcnow()
        with self._joined(session) as s:
            return self._transition(s, request_id, from_states, to_state, actor, reason, now)

    def _transition(
        self,
        s: Session,
        request_id: int,
        from_states: set[str],
        to_state: str,
        actor: str,
        reason: str | None,
        now: datetime,
    ) -> bool:
        incident_id = self._cas_state(s, request_id, from_states, to_state, actor, reason, now)
        if incident_id is None:
            return False
        self._audit_transition(
            s, incident_id, request_id, from_states, to_state, actor, reason, now
        )
        return True

    def _cas_state(
        self,
        s: Session,
        request_id: int,
        from_states: set[str],
        to_state: str,
        actor: str,
        reason: str | None,
        now: datetime,
    ) -> int | None:
        """CAS the request's state; return its incident id if this call moved it."""
        values: dict[str, Any] = {"state": to_state}
        if to_state in FINAL_STATES:
            values["idempotency_key"] = None
        if to_state in DECISION_STATES:
            values.update(decided_by=actor, decided_at=now, decision_reason=reason)
        return s.execute(
            sa.update(RemediationRequest)
            .where(
                RemediationRequest.id == request_id,
                RemediationRequest.state.in_(sorted(from_states)),
            )
            .values(**values)
            .returning(RemediationRequest.incident_id)
            .execution_options(synchronize_session=False)
        ).scalar_one_or_none()

    @staticmethod
    def _audit_transition(
        s: Session,
        incident_id: int,
        request_id: int,
        from_states: set[str],
        to_state: str,
        actor: str,
        reason: str | None,
        now: datetime,
    ) -> None:
        detail = {"request_id": request_id, "from": sorted(from_states), "reason": reason}
        append_audit(s, actor, f"remediation.{to_state}", incident_id, detail, at=now)

    def record_approval(
        self,
        request_id: int,
        user_id: str,
        decision: str,
        reason: str | None = None,
        now: datetime | None = None,
        session: Session | None = None,
    ) -> RemediationApproval:
        """Record one approver's click (including refused self-approvals)."""
        now = now or utcnow()
        with self._joined(session) as s:
            request = s.get_one(RemediationRequest, request_id)
            approval = RemediationApproval(
                request_id=request_id,
                user_id=user_id,
                decision=decision,
                reason=reason,
                created_at=now,
            )
            s.add(approval)
            s.flush()
            detail = {"request_id": request_id, "decision": decision, "reason": reason}
            append_audit(s, user_id, "remediation.vote", request.incident_id, detail, at=now)
            return approval

    def start_execution(
        self, request_id: int, actor: str, now: datetime | None = None
    ) -> RemediationExecution | None:
        """Atomically move an approved request to executing and create its execution row.

        Returns None if the request was not in state ``approved`` (someone else
        started it, or it was denied/expired): the caller must not execute.
        """
        now = now or utcnow()
        with self.session() as s:
            incident_id = self._cas_state(
                s, request_id, {"approved"}, "executing", actor, None, now
            )
            if incident_id is None:
                return None
            execution = RemediationExecution(
                request_id=request_id, started_at=now, outcome="running", detail={}
            )
            s.add(execution)
            s.flush()  # UNIQUE(request_id) backs up the state check above
            self._audit_transition(
                s, incident_id, request_id, {"approved"}, "executing", actor, None, now
            )
            return execution

    def finish_execution(
        self,
        request_id: int,
        outcome: str,
        actor: str,
        detail: dict[str, Any] | None = None,
        now: datetime | None = None,
        session: Session | None = None,
    ) -> bool:
        """Close a running execution; the request becomes succeeded or failed."""
        if outcome not in EXECUTION_OUTCOMES or outcome == "running":
            raise ValueError(f"invalid final outcome {outcome!r}")
        now = now or utcnow()
        with self._joined(session) as s:
            closed = s.execute(
                sa.update(RemediationExecution)
                .where(
                    RemediationExecution.request_id == request_id,
                    RemediationExecution.outcome == "running",
                )
                .values(outcome=outcome, finished_at=now, detail=dict(detail or {}))
                .execution_options(synchronize_session=False)
            )
            if rowcount(closed) != 1:
                return False
            final_state = "succeeded" if outcome == "succeeded" else "failed"
            moved = self._transition(s, request_id, {"executing"}, final_state, actor, None, now)
            if not moved:
                raise RuntimeError(f"remediation request {request_id} ran but is not executing")
            return True
