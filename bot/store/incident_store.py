"""Incidents, their alerts, and webhook delivery ids (replay protection)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.store.audit import append_audit
from bot.store.models import (
    ALERT_STATUSES,
    INCIDENT_STATUSES,
    Alert,
    Incident,
    WebhookDelivery,
    utcnow,
)
from bot.store.repository_base import (
    AlertRecord,
    AlertSummary,
    RepositoryBase,
    first_delivery,
    rowcount,
)


class IncidentStore(RepositoryBase):
    # -- incidents ---------------------------------------------------------

    def open_incident(
        self,
        key: str,
        source: str,
        title: str,
        severity: str,
        playbook_id: str,
        labels: dict[str, Any],
        pagerduty_incident_id: str | None = None,
        pagerduty_url: str | None = None,
        now: datetime | None = None,
        roles: dict[str, list[str]] | None = None,
    ) -> tuple[Incident, bool]:
        """Return (incident, created) in a transaction of its own; see `open_or_reopen`."""

        def attempt(s: Session) -> tuple[Incident, bool]:
            incident, outcome = self.open_or_reopen(
                s,
                key=key,
                source=source,
                title=title,
                severity=severity,
                playbook_id=playbook_id,
                labels=labels,
                pagerduty_incident_id=pagerduty_incident_id,
                pagerduty_url=pagerduty_url,
                now=now,
                roles=roles,
            )
            return incident, outcome == "created"

        return self._retry_on_conflict(attempt)

    def open_or_reopen(
        self,
        s: Session,
        *,
        key: str,
        source: str,
        title: str,
        severity: str,
        playbook_id: str,
        labels: dict[str, Any],
        pagerduty_incident_id: str | None = None,
        pagerduty_url: str | None = None,
        now: datetime | None = None,
        roles: dict[str, list[str]] | None = None,
        drill_run_id: int | None = None,
    ) -> tuple[Incident, str]:
        """One incident per key, even under races, in the caller's transaction.

        Returns the incident and "created", "reopened" (it was resolved: it
        is triggered again at level 1) or "existing". The insert runs in a
        savepoint, so a replica that loses the race for a new key reads the
        winner's row instead of failing the caller's whole transaction.
        """
        now = now or utcnow()
        existing = s.scalars(sa.select(Incident).where(Incident.key == key)).one_or_none()
        if existing is None:
            incident = Incident(
                key=key,
                source=source,
                title=title,
                severity=severity,
                status="triggered",
                playbook_id=playbook_id,
                pagerduty_incident_id=pagerduty_incident_id,
                pagerduty_url=pagerduty_url,
                escalation_level=1,
                created_at=now,
                updated_at=now,
                labels=dict(labels),
                roles=roles,
                drill_run_id=drill_run_id,
            )
            try:
                with s.begin_nested():
                    s.add(incident)
                    s.flush()
            except IntegrityError:
                existing = s.scalars(sa.select(Incident).where(Incident.key == key)).one()
            else:
                detail = {
                    "key": key,
                    "title": title,
                    "severity": severity,
                    "playbook_id": playbook_id,
                }
                append_audit(s, source, "incident.opened", incident.id, detail, at=now)
                return incident, "created"
        if existing.status == "resolved" and self._reopen(s, existing, source, now):
            return existing, "reopened"
        return existing, "existing"

    def _reopen(self, s: Session, incident: Incident, actor: str, now: datetime) -> bool:
        reopened = s.execute(
            sa.update(Incident)
            .where(Incident.id == incident.id, Incident.status == "resolved")
            .values(
                status="triggered",
                resolved_at=None,
                acknowledged_by=None,
                acknowledged_at=None,
                escalation_level=1,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        changed = rowcount(reopened) == 1  # else a concurrent caller reopened it
        if changed:
            append_audit(s, actor, "incident.reopened", incident.id, {"key": incident.key}, at=now)
        s.refresh(incident)
        return changed

    def get_incident(self, number: int) -> Incident | None:
        with self._read() as s:
            return s.get(Incident, number)

    def get_incident_by_key(self, key: str) -> Incident | None:
        return self._one_incident(Incident.key == key)

    def get_incident_by_pagerduty_id(self, pd_id: str) -> Incident | None:
        return self._one_incident(Incident.pagerduty_incident_id == pd_id)

    def get_incident_by_root(self, channel: str, ts: str) -> Incident | None:
        return self._one_incident(Incident.slack_channel == channel, Incident.slack_root_ts == ts)

    def _one_incident(self, *where: sa.ColumnElement[bool]) -> Incident | None:
        with self._read() as s:
            return s.scalars(sa.select(Incident).where(*where).limit(1)).first()

    def list_open_incidents(self, limit: int = 50) -> list[Incident]:
        """Unresolved incidents, newest first."""
        with self._read() as s:
            query = (
                sa.select(Incident)
                .where(Incident.status != "resolved")
                .order_by(Incident.id.desc())
                .limit(limit)
            )
            return list(s.scalars(query))

    def set_incident_status(
        self,
        number: int,
        new_status: str,
        actor: str,
        expected: set[str] | None = None,
        now: datetime | None = None,
        session: Session | None = None,
    ) -> bool:
        """Compare-and-set the status; True only for the caller that changed it.

        With ``expected=None`` any current status other than ``new_status`` is
        accepted (setting the status it already has is not a change). Pass
        ``session`` to make the change part of the caller's transaction (so the
        Slack messages it causes commit together with it).
        """
        if new_status not in INCIDENT_STATUSES:
            raise ValueError(f"unknown incident status {new_status!r}")
        now = now or utcnow()
        values: dict[str, Any] = {"status": new_status, "updated_at": now}
        if new_status == "acknowledged":
            values.update(acknowledged_by=actor, acknowledged_at=now)
        elif new_status == "resolved":
            # A resolved incident must never page again.
            values.update(resolved_at=now, next_escalation_at=None)
        else:
            values.update(resolved_at=None, acknowledged_by=None, acknowledged_at=None)
        guard = (
            Incident.status.in_(sorted(expected))
            if expected is not None
            else Incident.status != new_status
        )
        stmt = sa.update(Incident).where(Incident.id == number, guard).values(**values)
        with self._joined(session) as s:
            changed = rowcount(s.execute(stmt.execution_options(synchronize_session=False)))
            if changed != 1:
                return False
            detail = {"status": new_status, "expected": sorted(expected) if expected else None}
            append_audit(s, actor, f"incident.{new_status}", number, detail, at=now)
            return True

    def claim_slack_thread(self, session: Session, number: int, channel: str) -> bool:
        """True for the one caller that gets to post this incident's root message."""
        stmt = (
            sa.update(Incident)
            .where(Incident.id == number, Incident.slack_channel.is_(None))
            .values(slack_channel=channel)
        )
        return rowcount(session.execute(stmt.execution_options(synchronize_session=False))) == 1

    def set_slack_root(self, number: int, channel: str, ts: str) -> bool:
        stmt = (
            sa.update(Incident)
            .where(Incident.id == number)
            .values(slack_channel=channel, slack_root_ts=ts, updated_at=utcnow())
        )
        with self.session() as s:
            return rowcount(s.execute(stmt.execution_options(synchronize_session=False))) == 1

    # -- alerts and deliveries ---------------------------------------------

    def record_alerts(
        self,
        incident_id: int,
        alerts: Sequence[AlertRecord],
        now: datetime | None = None,
        session: Session | None = None,
    ) -> int:
        """Upsert a batch on (source, fingerprint) in one transaction; return how many were new.

        Repeats of a (source, fingerprint) within the batch collapse to the last.
        """
        now = now or utcnow()
        latest = {(a.source, a.fingerprint): a for a in alerts}
        # Sorted, so concurrent batches lock shared rows in the same order
        # and cannot deadlock each other on PostgreSQL.
        ordered = [latest[k] for k in sorted(latest)]
        rows = [
            {
                "incident_id": incident_id,
                "source": a.source,
                "fingerprint": a.fingerprint,
                "status": a.status,
                "severity": a.severity,
                "title": a.title,
                "labels": dict(a.labels),
                "annotations": dict(a.annotations),
                "starts_at": a.starts_at,
                "ends_at": a.ends_at,
                "first_seen_at": now,
                "last_seen_at": now,
                "occurrences": 1,
            }
            for a in ordered
        ]
        if not rows:
            return 0
        with self._joined(session) as s:
            # One statement with bound parameters, executed for all rows: SQLAlchemy
            # compiles it once (cached) and sends the rows in multi-VALUES pages,
            # instead of compiling a new 100-row VALUES statement per batch.
            result = s.execute(self._alert_upsert(), rows)
            # A freshly inserted row is the only one that can still say 1.
            return sum(1 for occurrences in result.scalars() if occurrences == 1)

    def _alert_upsert(self) -> Any:
        table = cast(sa.Table, Alert.__table__)
        insert = self._insert(table)
        return insert.on_conflict_do_update(
            index_elements=[table.c.source, table.c.fingerprint],
            set_={
                "status": insert.excluded.status,
                "ends_at": insert.excluded.ends_at,
                "last_seen_at": insert.excluded.last_seen_at,
                "occurrences": table.c.occurrences + 1,
            },
        ).returning(table.c.occurrences)

    def alert_counts(self, incident_id: int, session: Session | None = None) -> dict[str, int]:
        counts = dict.fromkeys(ALERT_STATUSES, 0)
        query = (
            sa.select(Alert.status, sa.func.count())
            .where(Alert.incident_id == incident_id)
            .group_by(Alert.status)
        )
        with self._reading(session) as s:
            for status, count in s.execute(query):
                counts[status] = count
        return counts

    def alert_summary(
        self, incident_id: int, sample: int = 200, session: Session | None = None
    ) -> AlertSummary:
        """Counts, first and last seen, and the commonest labels of recent alerts."""
        counts = self.alert_counts(incident_id, session)
        with self._reading(session) as s:
            first, last = s.execute(
                sa.select(sa.func.min(Alert.first_seen_at), sa.func.max(Alert.last_seen_at)).where(
                    Alert.incident_id == incident_id
                )
            ).one()
            recent = s.scalars(
                sa.select(Alert.labels)
                .where(Alert.incident_id == incident_id)
                .order_by(Alert.last_seen_at.desc())
                .limit(sample)
            ).all()
        tally: Counter[tuple[str, str]] = Counter()
        for labels in recent:
            tally.update((str(k), str(v)) for k, v in (labels or {}).items())
        # Labels every alert shares say nothing about the spread; show those that differ.
        varied = [(k, v, n) for (k, v), n in tally.most_common() if n < len(recent)]
        return AlertSummary(
            firing=counts.get("firing", 0),
            resolved=counts.get("resolved", 0),
            first_seen=first,
            last_seen=last,
            top_labels=varied[:3],
        )

    def remember_delivery(self, source: str, delivery_id: str, now: datetime | None = None) -> bool:
        """True the first time a (source, delivery_id) is seen, False for a retry."""
        with self.session() as s:
            return first_delivery(s.connection(), source, delivery_id, now or utcnow())

    def forget_deliveries(self, source: str, received_before: datetime) -> int:
        """Drop the delivery ids of `source` received before the given time; how many."""
        table = cast(sa.Table, WebhookDelivery.__table__)
        with self.session() as s:
            stmt = sa.delete(table).where(
                table.c.source == source, table.c.received_at < received_before
            )
            return rowcount(s.execute(stmt))
