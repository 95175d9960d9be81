"""Initial schema.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Every constraint and index name is wrapped in ``op.f()``: alembic applies the
models' naming convention to unmarked names, which would prefix them twice.

Self-contained on purpose: a migration is a frozen snapshot, so it must not
import the (evolving) models. ``tests/unit/store`` checks that this file and
``bot.store.models`` describe the same schema on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEVERITIES = ("critical", "warning", "info")


def _pk(table: str) -> list[sa.schema.SchemaItem]:
    return [
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
    ]


def _text(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def _ts(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _json(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.JSON(), nullable=False)


def _one_of(table: str, column: str, values: Sequence[str]) -> sa.CheckConstraint:
    quoted = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({quoted})", name=op.f(f"ck_{table}_{column}_valid"))


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}")
    )


def upgrade() -> None:
    op.create_table(
        "incidents",
        *_pk("incidents"),
        _text("key"),
        _text("source"),
        _text("title"),
        _text("severity"),
        _text("status"),
        _text("playbook_id"),
        _text("pagerduty_incident_id", nullable=True),
        _text("pagerduty_url", nullable=True),
        _text("slack_channel", nullable=True),
        _text("slack_root_ts", nullable=True),
        sa.Column("escalation_level", sa.Integer(), server_default="1", nullable=False),
        _ts("next_escalation_at", nullable=True),
        _text("acknowledged_by", nullable=True),
        _ts("acknowledged_at", nullable=True),
        _ts("resolved_at", nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        _json("labels"),
        _one_of("incidents", "source", ("pagerduty", "alertmanager", "generic", "slack")),
        _one_of("incidents", "severity", SEVERITIES),
        _one_of("incidents", "status", ("triggered", "acknowledged", "resolved")),
        sa.UniqueConstraint("key", name=op.f("uq_incidents_key")),
        sa.UniqueConstraint(
            "pagerduty_incident_id", name=op.f("uq_incidents_pagerduty_incident_id")
        ),
    )
    op.create_index(op.f("ix_incidents_next_escalation_at"), "incidents", ["next_escalation_at"])
    op.create_index(
        op.f("ix_incidents_slack_root"), "incidents", ["slack_channel", "slack_root_ts"]
    )
    op.create_index(op.f("ix_incidents_status"), "incidents", ["status"])

    op.create_table(
        "alerts",
        *_pk("alerts"),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        _text("source"),
        _text("fingerprint"),
        _text("status"),
        _text("severity"),
        _text("title"),
        _json("labels"),
        _json("annotations"),
        _ts("starts_at"),
        _ts("ends_at", nullable=True),
        _ts("first_seen_at"),
        _ts("last_seen_at"),
        sa.Column("occurrences", sa.Integer(), server_default="1", nullable=False),
        _one_of("alerts", "status", ("firing", "resolved")),
        _one_of("alerts", "severity", SEVERITIES),
        _fk("alerts", "incident_id", "incidents"),
        sa.UniqueConstraint("source", "fingerprint", name=op.f("uq_alerts_source_fingerprint")),
    )
    op.create_index(op.f("ix_alerts_incident_id"), "alerts", ["incident_id"])

    op.create_table(
        "webhook_deliveries",
        *_pk("webhook_deliveries"),
        _text("source"),
        _text("delivery_id"),
        _ts("received_at"),
        sa.UniqueConstraint(
            "source", "delivery_id", name=op.f("uq_webhook_deliveries_source_delivery_id")
        ),
    )
    op.create_index(
        op.f("ix_webhook_deliveries_received_at"), "webhook_deliveries", ["received_at"]
    )

    op.create_table(
        "remediation_requests",
        *_pk("remediation_requests"),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        _text("playbook_id"),
        _text("step_id"),
        _text("action"),
        _json("params"),
        _text("requested_by"),
        _text("state"),
        _ts("created_at"),
        _ts("expires_at"),
        _text("decided_by", nullable=True),
        _ts("decided_at", nullable=True),
        _text("decision_reason", nullable=True),
        _text("idempotency_key", nullable=True),
        _one_of(
            "remediation_requests",
            "state",
            (
                "pending",
                "approved",
                "denied",
                "expired",
                "executing",
                "succeeded",
                "failed",
                "refused",
            ),
        ),
        _fk("remediation_requests", "incident_id", "incidents"),
        sa.UniqueConstraint(
            "idempotency_key", name=op.f("uq_remediation_requests_idempotency_key")
        ),
    )
    op.create_index(
        op.f("ix_remediation_requests_incident_id"), "remediation_requests", ["incident_id"]
    )

    op.create_table(
        "remediation_approvals",
        *_pk("remediation_approvals"),
        sa.Column("request_id", sa.Integer(), nullable=False),
        _text("user_id"),
        _text("decision"),
        _text("reason", nullable=True),
        _ts("created_at"),
        _one_of(
            "remediation_approvals",
            "decision",
            ("approve", "deny", "refused_self", "refused_not_allowed"),
        ),
        _fk("remediation_approvals", "request_id", "remediation_requests"),
    )
    op.create_index(
        op.f("ix_remediation_approvals_request_id"), "remediation_approvals", ["request_id"]
    )

    op.create_table(
        "remediation_executions",
        *_pk("remediation_executions"),
        sa.Column("request_id", sa.Integer(), nullable=False),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        _text("outcome"),
        _json("detail"),
        _one_of("remediation_executions", "outcome", ("running", "succeeded", "failed", "aborted")),
        _fk("remediation_executions", "request_id", "remediation_requests"),
        sa.UniqueConstraint("request_id", name=op.f("uq_remediation_executions_request_id")),
    )

    op.create_table(
        "escalation_steps",
        *_pk("escalation_steps"),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), server_default="0", nullable=False),
        _ts("fired_at"),
        _text("actor"),
        _text("reason", nullable=True),
        _fk("escalation_steps", "incident_id", "incidents"),
        sa.UniqueConstraint(
            "incident_id",
            "level",
            "epoch",
            name=op.f("uq_escalation_steps_incident_id_level_epoch"),
        ),
    )

    op.create_table(
        "outbox",
        *_pk("outbox"),
        _text("channel"),
        _text("method"),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        _text("thread_ts", nullable=True),
        _text("coalesce_key", nullable=True),
        _json("payload"),
        _text("state"),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        _ts("next_attempt_at"),
        _ts("created_at"),
        _ts("sent_at", nullable=True),
        _text("result_ts", nullable=True),
        _text("last_error", nullable=True),
        _one_of("outbox", "method", ("chat.postMessage", "chat.update")),
        _one_of("outbox", "state", ("pending", "sent", "failed")),
        _fk("outbox", "incident_id", "incidents"),
    )
    op.create_index(op.f("ix_outbox_coalesce_key"), "outbox", ["coalesce_key"])
    op.create_index(op.f("ix_outbox_next_attempt_at"), "outbox", ["next_attempt_at"])

    op.create_table(
        "audit_log",
        *_pk("audit_log"),
        _ts("at"),
        _text("actor"),
        _text("action"),
        # No foreign key: the audit log must outlive anything it mentions.
        sa.Column("incident_id", sa.Integer(), nullable=True),
        _json("detail"),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("prev_hash", name=op.f("uq_audit_log_prev_hash")),
    )
    op.create_index(op.f("ix_audit_log_incident_id"), "audit_log", ["incident_id"])


def downgrade() -> None:
    for table in (
        "audit_log",
        "outbox",
        "escalation_steps",
        "remediation_executions",
        "remediation_approvals",
        "remediation_requests",
        "webhook_deliveries",
        "alerts",
        "incidents",
    ):
        op.drop_table(table)  # drops the table's indexes with it
