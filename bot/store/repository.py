"""Repository: the operations the bot performs on its durable state.

Every public method is one short transaction and returns detached ORM objects
(``expire_on_commit=False``: loaded attributes stay readable after the session
closes; there are no relationships to lazy-load). Methods are synchronous; the
async app calls them through a thread pool.

Concurrency rules used throughout:

* Idempotent creates insert and rely on a UNIQUE constraint; the loser of a
  race gets IntegrityError, rolls back and re-reads the winner's row.
* State changes are compare-and-set ``UPDATE ... WHERE state IN (...)``; the
  row count says whether this caller won.
* The audit row is always the last write of a transaction (see
  ``append_audit``), and is committed together with the change it records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.store.audit import append_audit
from bot.store.db import READ_ONLY_OPTIONS
from bot.store.models import (
    ALERT_STATUSES,
    EXECUTION_OUTCOMES,
    INCIDENT_STATUSES,
    REMEDIATION_STATES,
    Alert,
    AuditEntry,
    EscalationStep,
    Incident,
    RemediationApproval,
    RemediationExecution,
    RemediationRequest,
    WebhookDelivery,
    utcnow,
)

T = TypeVar("T")

# A race on a unique key resolves in one retry; a few more absorb the rare
# case of racing on the audit chain tip as well.
_RACE_RETRIES = 5
# Remediation states that record who decided and why.
_DECISION_STATES = frozenset({"approved", "denied", "expired", "refused"})
# A request in one of these is over: its step may be requested again.
_FINAL_STATES = frozenset({"denied", "expired", "refused", "succeeded", "failed"})


@dataclass(frozen=True)
class AlertRecord:
    source: str
    fingerprint: str
    status: str  # firing | resolved
    severity: str  # critical | warning | info
    title: str
    labels: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)
    starts_at: datetime = field(default_factory=utcnow)
    ends_at: datetime | None = None


def first_delivery(conn: sa.Connection, source: str, delivery_id: str, now: datetime) -> bool:
    """Record a delivery id in the caller's transaction; False if it was seen before."""
    table = cast(sa.Table, WebhookDelivery.__table__)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = (
        insert(table)
        .values(source=source, delivery_id=delivery_id, received_at=now)
        .on_conflict_do_nothing(index_elements=[table.c.source, table.c.delivery_id])
        .returning(table.c.id)
    )
    return conn.execute(stmt).scalar() is not None


def _rowcount(result: sa.Result[Any]) -> int:
    return cast(sa.CursorResult[Any], result).rowcount


@dataclass(frozen=True)
class AlertSummary:
    firing: int
    resolved: int
    first_seen: datetime | None
    last_seen: datetime | None
    top_labels: list[tuple[str, str, int]]


class Repository:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # Pure reads skip SQLite's BEGIN IMMEDIATE (see bot.store.db).
        self._read_sessions = sessionmaker(
            engine.execution_options(**READ_ONLY_OPTIONS), expire_on_commit=False
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session inside one transaction: commits on normal exit, rolls back on error."""
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._read_sessions.begin() as session:
            yield session

    def _insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    @contextmanager
    def _joined(self, session: Session | None) -> Iterator[Session]:
        """The caller's session (its transaction, its commit), or a new transaction."""
        if session is not None:
            yield session
            return
        with self.session() as own:
            yield own

    @contextmanager
    def _reading(self, session: Session | None) -> Iterator[Session]:
        """The caller's session (to see its own uncommitted writes), or a read-only one."""
        if session is not None:
            yield session
            return
        with self._read() as own:
            yield own

    def _retry_on_conflict(self, attempt: Callable[[Session], T]) -> T:
        for remaining in reversed(range(_RACE_RETRIES)):
            try:
                with self.session() as session:
                    return attempt(session)
            except IntegrityError:
                if remaining == 0:
                    raise
        raise AssertionError("unreachable")

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
        changed = _rowcount(reopened) == 1  # else a concurrent caller reopened it
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
            changed = _rowcount(s.execute(stmt.execution_options(synchronize_session=False)))
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
        return _rowcount(session.execute(stmt.execution_options(synchronize_session=False))) == 1

    def set_slack_root(self, number: int, channel: str, ts: str) -> bool:
        stmt = (
            sa.update(Incident)
            .where(Incident.id == number)
            .values(slack_channel=channel, slack_root_ts=ts, updated_at=utcnow())
        )
        with self.session() as s:
            return _rowcount(s.execute(stmt.execution_options(synchronize_session=False))) == 1

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
            return _rowcount(s.execute(stmt))

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
            return _rowcount(s.execute(stmt.execution_options(synchronize_session=False))) == 1

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
        if to_state in _FINAL_STATES:
            values["idempotency_key"] = None
        if to_state in _DECISION_STATES:
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
            if _rowcount(closed) != 1:
                return False
            final_state = "succeeded" if outcome == "succeeded" else "failed"
            moved = self._transition(s, request_id, {"executing"}, final_state, actor, None, now)
            if not moved:
                raise RuntimeError(f"remediation request {request_id} ran but is not executing")
            return True

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
        if _rowcount(moved) != 1:
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
