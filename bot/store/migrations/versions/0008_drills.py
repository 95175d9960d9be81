"""Recovery drills: runs, schedule ticks, drill incidents, and drill messages last.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

Self-contained like 0001: it must not import the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "drill_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scenario", sa.Text(), nullable=False),
        sa.Column("playbook_id", sa.Text(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("started_by", sa.Text(), nullable=False),
        sa.Column("batch", sa.Text(), nullable=False),
        sa.Column("schedule_id", sa.Text(), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("scorecard", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drill_runs")),
        sa.CheckConstraint(
            "state IN ('running', 'finished')", name=op.f("ck_drill_runs_state_valid")
        ),
        sa.CheckConstraint(
            "trigger IN ('cli', 'slack', 'schedule')", name=op.f("ck_drill_runs_trigger_valid")
        ),
    )
    op.create_index("ix_drill_runs_batch", "drill_runs", ["batch"])
    op.create_index("ix_drill_runs_state", "drill_runs", ["state"])
    op.create_index("ix_drill_runs_incident_id", "drill_runs", ["incident_id"])
    op.create_table(
        "drill_ticks",
        sa.Column("schedule_id", sa.Text(), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("batch", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("schedule_id", "scheduled_for", name=op.f("pk_drill_ticks")),
        sa.CheckConstraint(
            "outcome IN ('started', 'missed', 'baseline')",
            name=op.f("ck_drill_ticks_outcome_valid"),
        ),
    )
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("drill_run_id", sa.Integer(), nullable=True))
        batch.create_index("ix_incidents_drill_run_id", ["drill_run_id"])
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("inbox") as batch:
        batch.drop_constraint(op.f("ck_inbox_source_valid"), type_="check")
        batch.create_check_constraint(
            "source_valid", sa.text("source IN ('alertmanager', 'pagerduty', 'drill')")
        )


def downgrade() -> None:
    op.execute("DELETE FROM inbox WHERE source = 'drill'")
    with op.batch_alter_table("inbox") as batch:
        batch.drop_constraint(op.f("ck_inbox_source_valid"), type_="check")
        batch.create_check_constraint(
            "source_valid", sa.text("source IN ('alertmanager', 'pagerduty')")
        )
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("priority")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_index("ix_incidents_drill_run_id")
        batch.drop_column("drill_run_id")
    op.drop_table("drill_ticks")
    op.drop_table("drill_runs")
