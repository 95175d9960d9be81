"""Incidents, their alerts, and webhook delivery ids (replay protection)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
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

_ALERT_COLUMNS = (
    "incident_id, source, fingerprint, status, severity, title, labels, annotations, "
    "starts_at, ends_at, first_seen_at, last_seen_at"
)
_ALERT_CONFLICT = (
    "ON CONFLICT (source, fingerprint) DO UPDATE SET status = excluded.status, "
    "ends_at = excluded.ends_at, last_seen_at = excluded.last_seen_at, "
    "occurrences = alerts.occurrences + 1 RETURNING occurrences"
)
# json, not jsonb: jsonb would reorder the labels' keys.
_PG_ALERT_UPSERT = sa.text(
    f"INSERT INTO alerts ({_ALERT_COLUMNS}) SELECT {_ALERT_COLUMNS} "  # noqa: S608 (constants)
    "FROM json_to_recordset(CAST(:rows AS json)) AS r(incident_id integer, source text, "
    "fingerprint text, status text, severity text, title text, labels json, "
    "annotations json, starts_at timestamptz, ends_at timestamptz, "
    f"first_seen_at timestamptz, last_seen_at timestamptz) {_ALERT_CONFLICT}"
)
# `WHERE true`: SQLite's grammar needs it between a SELECT and ON CONFLICT.
_SQLITE_ALERT_UPSERT = sa.text(
    f"INSERT INTO alerts ({_ALERT_COLUMNS}) SELECT "  # noqa: S608 (constants)
    + ", ".join(
        f"json_extract(value, '$.{column.strip()}')" for column in _ALERT_COLUMNS.split(",")
    )
    + f" FROM json_each(:rows) WHERE true {_ALERT_CONFLICT}"
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
        if not ordered:
            return 0
        stamp = self._stamp()
        seen = stamp(now)
        rows = [
            {
                "incident_id": incident_id,
                "source": a.source,
                "fingerprint": a.fingerprint,
                "status": a.status,
                "severity": a.severity,
                "title": a.title,
                "labels": a.labels,
                "annotations": a.annotations,
                "starts_at": stamp(a.starts_at),
                "ends_at": stamp(a.ends_at) if a.ends_at is not None else None,
                "first_seen_at": seen,
                "last_seen_at": seen,
            }
            for a in ordered
        ]
        with self._joined(session) as s:
            # The whole batch is one JSON parameter that the database unpacks
            # itself (json_to_recordset, json_each): one short statement, parsed
            # and planned once, instead of a 100-row VALUES list whose
            # parameters the driver binds one by one (psycopg re-parses such a
            # long statement on every call: it is too long for its cache).
            result = s.execute(self._alert_upsert(), {"rows": json.dumps(rows)})
            # A freshly inserted row is the only one that can still say 1.
            return sum(1 for occurrences in result.scalars() if occurrences == 1)

    def _stamp(self) -> Callable[[datetime], str]:
        """A UTC time as this database stores it: SQLite as SQLAlchemy writes its
        DATETIME text (so ordering and reads agree), PostgreSQL as ISO 8601."""
        if self.engine.dialect.name == "postgresql":
            return lambda value: value.astimezone(UTC).isoformat()
        return lambda value: value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def _alert_upsert(self) -> sa.TextClause:
        if self.engine.dialect.name == "postgresql":
            return _PG_ALERT_UPSERT
        return _SQLITE_ALERT_UPSERT

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
