"""SQLAlchemy models: the durable state of the incident bot.

Every datetime column is timezone-aware UTC (``UTCDateTime``): SQLite stores
timestamps without an offset, so the type normalises to UTC on the way in and
re-attaches UTC on the way out; both backends then hand back equal values.

Enum-like columns are plain strings guarded by CHECK constraints, so a typo in
application code fails loudly at the database instead of writing a state that
no query will ever match. Adding a value means a migration, on purpose.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

INCIDENT_SOURCES = ("pagerduty", "alertmanager", "generic", "slack")
SEVERITIES = ("critical", "warning", "info")
INCIDENT_STATUSES = ("triggered", "acknowledged", "resolved")
ALERT_STATUSES = ("firing", "resolved")
REMEDIATION_STATES = (
    "pending",
    "approved",
    "denied",
    "expired",
    "executing",
    "succeeded",
    "failed",
    "refused",
)
APPROVAL_DECISIONS = ("approve", "deny", "refused_self", "refused_not_allowed")
EXECUTION_OUTCOMES = ("running", "succeeded", "failed", "aborted")
OUTBOX_STATES = ("pending", "sent", "failed")
INBOX_SOURCES = ("alertmanager", "pagerduty", "drill")
INBOX_STATES = ("pending", "failed")

# Deterministic constraint names: alembic needs names to alter or drop
# constraints later (SQLite batch mode rebuilds tables by name), and both
# backends must end up with identical names for the no-diff check to hold.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always round-trips as aware UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive value is ambiguous (local time? UTC?); storing it would
            # silently shift timelines by hours, so refuse it outright.
            raise ValueError(f"naive datetime {value!r}: pass an aware datetime (e.g. UTC)")
        value = value.astimezone(UTC)
        # SQLite's DATETIME storage ignores tzinfo; hand it the UTC wall time.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _one_of(column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    quoted = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({quoted})", name=f"{column}_valid")


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        dict[str, Any]: sa.JSON(),
        str: sa.Text(),
    }


class Incident(Base):
    __tablename__ = "incidents"
    __table_args__ = (
        _one_of("source", INCIDENT_SOURCES),
        _one_of("severity", SEVERITIES),
        _one_of("status", INCIDENT_STATUSES),
        sa.Index("ix_incidents_slack_root", "slack_channel", "slack_root_ts"),
    )

    # The id doubles as the incident number users type ("/incident ack 42").
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(unique=True)
    source: Mapped[str]
    title: Mapped[str]
    severity: Mapped[str]
    status: Mapped[str] = mapped_column(index=True)
    playbook_id: Mapped[str]
    pagerduty_incident_id: Mapped[str | None] = mapped_column(unique=True)
    pagerduty_url: Mapped[str | None]
    slack_channel: Mapped[str | None]
    slack_root_ts: Mapped[str | None]
    escalation_level: Mapped[int] = mapped_column(default=1, server_default="1")
    next_escalation_at: Mapped[datetime | None] = mapped_column(index=True)
    acknowledged_by: Mapped[str | None]
    acknowledged_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    labels: Mapped[dict[str, Any]]
    # Communication plan: role -> Slack user/group IDs (commander, tech-lead, comms).
    roles: Mapped[dict[str, Any] | None]
    # The last public status update (investigating/identified/monitoring/resolved).
    public_status: Mapped[str | None]
    last_public_update_at: Mapped[datetime | None]
    # When the Communications role was last reminded to post an update (CAS key).
    update_reminded_at: Mapped[datetime | None]
    # Set for a recovery drill's incident (bot.drills): rehearsal mode, never public.
    drill_run_id: Mapped[int | None] = mapped_column(index=True)


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        sa.UniqueConstraint("source", "fingerprint"),
        _one_of("status", ALERT_STATUSES),
        _one_of("severity", SEVERITIES),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id"), index=True)
    source: Mapped[str]
    fingerprint: Mapped[str]
    status: Mapped[str]
    severity: Mapped[str]
    title: Mapped[str]
    labels: Mapped[dict[str, Any]]
    annotations: Mapped[dict[str, Any]]
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    occurrences: Mapped[int] = mapped_column(default=1, server_default="1")


class WebhookDelivery(Base):
    """One row per delivery id seen, so webhook/Slack retries are ignored."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (sa.UniqueConstraint("source", "delivery_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    source: Mapped[str]
    delivery_id: Mapped[str]
    received_at: Mapped[datetime] = mapped_column(index=True)


class RemediationRequest(Base):
    __tablename__ = "remediation_requests"
    __table_args__ = (_one_of("state", REMEDIATION_STATES),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id"), index=True)
    playbook_id: Mapped[str]
    step_id: Mapped[str]
    action: Mapped[str]
    params: Mapped[dict[str, Any]]
    requested_by: Mapped[str]
    state: Mapped[str]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    decided_by: Mapped[str | None]
    decided_at: Mapped[datetime | None]
    decision_reason: Mapped[str | None]
    # One open request per incident step: a double click must not create two
    # requests. Cleared when the request ends, so the step can be asked for again.
    idempotency_key: Mapped[str | None] = mapped_column(unique=True)
    # What the approver was shown (summary, details) and the snapshot that the
    # execution re-checks against the live target.
    preview: Mapped[dict[str, Any] | None]


class RemediationApproval(Base):
    __tablename__ = "remediation_approvals"
    __table_args__ = (_one_of("decision", APPROVAL_DECISIONS),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(sa.ForeignKey("remediation_requests.id"), index=True)
    user_id: Mapped[str]
    decision: Mapped[str]
    reason: Mapped[str | None]
    created_at: Mapped[datetime]


class RemediationExecution(Base):
    __tablename__ = "remediation_executions"
    __table_args__ = (_one_of("outcome", EXECUTION_OUTCOMES),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    # UNIQUE: the database, not application code, guarantees one execution.
    request_id: Mapped[int] = mapped_column(sa.ForeignKey("remediation_requests.id"), unique=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str]
    detail: Mapped[dict[str, Any]]


class EscalationStep(Base):
    __tablename__ = "escalation_steps"
    # One firing per (incident, level, epoch): two schedulers cannot page twice.
    __table_args__ = (sa.UniqueConstraint("incident_id", "level", "epoch"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id"))
    level: Mapped[int]
    epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    fired_at: Mapped[datetime]
    actor: Mapped[str]
    reason: Mapped[str | None]


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        _one_of("state", OUTBOX_STATES),
        sa.Index("ix_outbox_output_state", "output", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    # Which output delivers the row ("slack", "email", "pagerduty", ...); no
    # CHECK on purpose: a new output is a module and a registration, not a migration.
    output: Mapped[str] = mapped_column(default="slack", server_default="slack")
    # Slack: the channel; other outputs: their pacing key (e.g. "smtp").
    channel: Mapped[str]
    method: Mapped[str]
    incident_id: Mapped[int | None] = mapped_column(sa.ForeignKey("incidents.id"))
    thread_ts: Mapped[str | None]
    coalesce_key: Mapped[str | None] = mapped_column(index=True)
    payload: Mapped[dict[str, Any]]
    state: Mapped[str]
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    result_ts: Mapped[str | None]
    last_error: Mapped[str | None]
    # Lower goes first among rows waiting for one pacing key: a drill's messages
    # (1) never hold up a real incident's (0).
    priority: Mapped[int] = mapped_column(default=0, server_default="0")
    # When the current run of attempts began: a post that may have reached
    # Slack is looked for from here on (conversations.history ``oldest``).
    first_attempt_at: Mapped[datetime | None]


class InboxBatch(Base):
    """A webhook body accepted (202) but not yet applied to incidents.

    The webhook answers once this row is committed; the inbox worker applies
    it and deletes it in the same transaction. A body that keeps failing stays
    here as ``failed`` with its error, for a human to look at: never dropped.
    """

    __tablename__ = "inbox"
    __table_args__ = (
        _one_of("source", INBOX_SOURCES),
        _one_of("state", INBOX_STATES),
        sa.Index("ix_inbox_next", "state", "priority", "id"),
        sa.Index("ix_inbox_group", "group_key", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    source: Mapped[str]
    # Lower goes first: PagerDuty (0) before bulk Alertmanager batches (1).
    priority: Mapped[int]
    body: Mapped[str]
    # Rows of one group (an Alertmanager groupKey, a PagerDuty incident) are
    # applied strictly in order, even across replicas: a "resolved" batch never
    # overtakes the "firing" one before it.
    group_key: Mapped[str]
    alert_count: Mapped[int]
    state: Mapped[str]
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    # Claimed until (a lease) or, after a failure, not retried before.
    not_before: Mapped[datetime]
    received_at: Mapped[datetime]
    last_error: Mapped[str | None]


class AuditEntry(Base):
    """Append-only, hash-chained log (see ``bot.store.audit``)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str]
    action: Mapped[str]
    # Deliberately no foreign key: the log must outlive anything it mentions.
    incident_id: Mapped[int | None] = mapped_column(index=True)
    detail: Mapped[dict[str, Any]]
    # UNIQUE: two appenders that read the same tip cannot both commit, so the
    # chain can never fork even if the serialising lock were bypassed.
    prev_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    hash: Mapped[str] = mapped_column(sa.String(64))


class TimelineEvent(Base):
    """One thing that happened to an incident: facts, never rendered text.

    Written in the same transaction as the state change it records; outputs
    (Slack, email, PagerDuty, ...) render it for their audience.
    """

    __tablename__ = "timeline_events"
    __table_args__ = (sa.Index("ix_timeline_events_incident", "incident_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id"))
    kind: Mapped[str]
    actor: Mapped[str]
    # Public events (status updates, opened/resolved) may reach customers.
    public: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    facts: Mapped[dict[str, Any]]
    at: Mapped[datetime]


class StatusSnapshot(Base):
    """The public status page as last built (bot/web): one row, read by every request.

    Rebuilt in the transaction of each public change, so the page, its JSON and
    its feed never query incidents and every replica serves the same page.
    """

    __tablename__ = "status_snapshot"

    id: Mapped[int] = mapped_column(primary_key=True)  # always 1
    document: Mapped[dict[str, Any]]
    etag: Mapped[str]
    updated_at: Mapped[datetime]


class StatusComponentOverride(Base):
    """A component state set by hand (`/incident component NAME STATE`), until cleared."""

    __tablename__ = "status_component_overrides"

    component_id: Mapped[str] = mapped_column(primary_key=True)
    state: Mapped[str]
    set_by: Mapped[str]
    set_at: Mapped[datetime]


class PlaybookReviewReminder(Base):
    """A playbook's review reminder, posted once per due date (the key is the guard)."""

    __tablename__ = "playbook_review_reminders"

    playbook_id: Mapped[str] = mapped_column(primary_key=True)
    due_on: Mapped[str] = mapped_column(primary_key=True)  # YYYY-MM-DD
    sent_at: Mapped[datetime]


class DrillRun(Base):
    """One recovery drill: its scenario, its incident, and the scorecard when it ended."""

    __tablename__ = "drill_runs"
    __table_args__ = (
        _one_of("state", ("running", "finished")),
        _one_of("trigger", ("cli", "slack", "schedule")),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    scenario: Mapped[str]
    playbook_id: Mapped[str]
    trigger: Mapped[str]
    started_by: Mapped[str]
    # Runs started together (`drill run --all`, a monthly tick) share a batch.
    batch: Mapped[str] = mapped_column(index=True)
    schedule_id: Mapped[str | None]
    state: Mapped[str] = mapped_column(index=True)
    started_at: Mapped[datetime]
    deadline_at: Mapped[datetime]
    incident_id: Mapped[int | None] = mapped_column(index=True)
    finished_at: Mapped[datetime | None]
    # True when every step would have worked; None while running.
    passed: Mapped[bool | None]
    scorecard: Mapped[dict[str, Any] | None]


class DrillTick(Base):
    """A schedule's tick, inserted once by the replica that sees it first (the key guards)."""

    __tablename__ = "drill_ticks"
    __table_args__ = (_one_of("outcome", ("started", "missed", "baseline")),)

    schedule_id: Mapped[str] = mapped_column(primary_key=True)
    scheduled_for: Mapped[datetime] = mapped_column(primary_key=True)
    outcome: Mapped[str]
    recorded_at: Mapped[datetime]
    # The drill batch started for it, or why it did not run.
    batch: Mapped[str | None]
    detail: Mapped[str | None]


class SlackPace(Base):
    """Where Slack's pace for one method and channel stands, shared by every replica.

    Generic cell rate algorithm: ``tat`` is the theoretical arrival time of the
    next call. A call may go when ``tat - (burst - 1) / rate <= now``, and moves
    ``tat`` to ``max(tat, now) + 1 / rate``, in the claim's transaction. Each
    replica also paces itself, but only this keeps two replicas from sending a
    channel twice Slack's rate.
    """

    __tablename__ = "slack_pace"

    key: Mapped[str] = mapped_column(primary_key=True)  # "<method>:<channel>"
    tat: Mapped[datetime]
