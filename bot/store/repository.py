"""Repository: the operations the bot performs on its durable state.

Composed of the incident store (incidents, alerts, delivery ids), the
remediation store, and here the escalation ladder's steps and the audit log.
The rules every method follows are in `bot.store.repository_base`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.store.audit import append_audit
from bot.store.incident_store import IncidentStore
from bot.store.models import (
    AuditEntry,
    EscalationStep,
    Incident,
    utcnow,
)
from bot.store.remediation_store import RemediationStore
from bot.store.repository_base import (
    AlertRecord,
    AlertSummary,
    RepositoryBase,
    first_delivery,
    rowcount,
)


class Repository(IncidentStore, RemediationStore):
    # -- escalation --------------------------------------------------------

    def due_escalations(self, now: datetime, limit: int = 100) -> list[Incident]:
        """Unacknowledged incidents whose next escalation level is due."""
        with self._read() as s:
            query = (
                sa.select(Incident)
                .where(Incident.status == "triggered", Incident.next_escalation_at <= now)
                .order_by(Incident.next_escalation_at)
                .limit(limit)
            )
            return list(s.scalars(query))

    def claim_escalation(
        self,
        session: Session,
        incident_id: int,
        from_level: int,
        to_level: int,
        seen_next_at: datetime | None,
        next_at: datetime | None,
        actor: str,
        reason: str,
        epoch: int = 0,
        now: datetime | None = None,
        require_triggered: bool = True,
    ) -> bool:
        """Take one step of the ladder, once, in the caller's transaction.

        Compare-and-set on the incident (still unacknowledged, still at
        `from_level`, same due time as seen) and a unique (incident, level,
        epoch) step row: two replicas or a restart can never post a level twice.
        """
        now = now or utcnow()
        guards = [Incident.id == incident_id, Incident.escalation_level == from_level]
        if require_triggered:
            guards.append(Incident.status == "triggered")
        else:
            guards.append(Incident.status != "resolved")
        guards.append(
            Incident.next_escalation_at.is_(None)
            if seen_next_at is None
            else Incident.next_escalation_at == seen_next_at
        )
        table = cast(sa.Table, EscalationStep.__table__)
        claimed = session.scalar(
            self._insert(table)
            .values(
                incident_id=incident_id,
                level=to_level,
                epoch=epoch,
                fired_at=now,
                actor=actor,
                reason=reason,
            )
            .on_conflict_do_nothing(
                index_elements=[table.c.incident_id, table.c.level, table.c.epoch]
            )
            .returning(table.c.id)
        )
        if claimed is None:
            return False  # this level already fired in this epoch
        moved = session.execute(
            sa.update(Incident)
            .where(*guards)
            .values(escalation_level=to_level, next_escalation_at=next_at, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if rowcount(moved) != 1:
            # Acknowledged, resolved or moved by someone else meanwhile: take nothing.
            session.execute(sa.delete(table).where(table.c.id == claimed))
            return False
        detail = {"level": to_level, "epoch": epoch, "reason": reason}
        append_audit(session, actor, "escalation.fired", incident_id, detail, at=now)
        return True

    def escalation_epoch(self, incident_id: int, session: Session | None = None) -> int:
        with self._reading(session) as s:
            value = s.scalar(
                sa.select(sa.func.max(EscalationStep.epoch)).where(
                    EscalationStep.incident_id == incident_id
                )
            )
            return int(value or 0)

    def set_next_escalation(
        self, session: Session, incident_id: int, next_at: datetime | None
    ) -> None:
        session.execute(
            sa.update(Incident)
            .where(Incident.id == incident_id)
            .values(next_escalation_at=next_at)
            .execution_options(synchronize_session=False)
        )

    def escalation_steps(self, incident_id: int) -> list[EscalationStep]:
        with self._read() as s:
            query = (
                sa.select(EscalationStep)
                .where(EscalationStep.incident_id == incident_id)
                .order_by(EscalationStep.id)
            )
            return list(s.scalars(query))

    # -- audit -------------------------------------------------------------

    def audit(
        self,
        actor: str,
        action: str,
        incident_id: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        def attempt(s: Session) -> AuditEntry:
            return append_audit(s, actor, action, incident_id, detail)

        return self._retry_on_conflict(attempt)

    def timeline(self, incident_id: int) -> list[AuditEntry]:
        with self._read() as s:
            query = (
                sa.select(AuditEntry)
                .where(AuditEntry.incident_id == incident_id)
                .order_by(AuditEntry.id)
            )
            return list(s.scalars(query))


__all__ = ["AlertRecord", "AlertSummary", "Repository", "RepositoryBase", "first_delivery"]
