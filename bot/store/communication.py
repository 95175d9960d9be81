"""Incident roles, public status and the update-cadence reminder, in the caller's transaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.store.models import Incident


def assign_role(
    session: Session, number: int, role: str, holders: list[str], now: datetime
) -> list[str] | None:
    """Set who holds `role`; returns the previous holders, or None if unchanged/no incident."""
    incident = session.get(Incident, number, populate_existing=True, with_for_update=True)
    if incident is None:
        return None
    roles: dict[str, Any] = dict(incident.roles or {})
    previous = list(roles.get(role) or [])
    if previous == holders:
        return None
    roles[role] = list(holders)
    session.execute(
        sa.update(Incident)
        .where(Incident.id == number)
        .values(roles=roles, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return previous


def record_public_update(session: Session, number: int, status: str, now: datetime) -> None:
    session.execute(
        sa.update(Incident)
        .where(Incident.id == number)
        .values(public_status=status, last_public_update_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def due_update_reminders(
    session: Session, now: datetime, remind_after: timedelta, limit: int = 100
) -> list[Incident]:
    """Open critical incidents whose last public update (or start) and last reminder are old."""
    cutoff = now - remind_after
    last_update = sa.func.coalesce(Incident.last_public_update_at, Incident.created_at)
    query = (
        sa.select(Incident)
        .where(
            Incident.severity == "critical",
            Incident.status != "resolved",
            last_update <= cutoff,
            sa.or_(Incident.update_reminded_at.is_(None), Incident.update_reminded_at <= cutoff),
        )
        .order_by(Incident.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def claim_update_reminder(
    session: Session, number: int, seen: datetime | None, now: datetime
) -> bool:
    """Compare-and-set on `update_reminded_at`: one replica reminds, once per interval."""
    guard = (
        Incident.update_reminded_at.is_(None)
        if seen is None
        else Incident.update_reminded_at == seen
    )
    result = session.execute(
        sa.update(Incident)
        .where(Incident.id == number, guard)
        .values(update_reminded_at=now)
        .execution_options(synchronize_session=False)
    )
    return cast(sa.CursorResult[Any], result).rowcount == 1
