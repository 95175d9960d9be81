"""Webhook inbox: accepted bodies waiting to be applied to incidents.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

Self-contained like 0001: it must not import the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("alert_count", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "source IN ('alertmanager', 'pagerduty')", name=op.f("ck_inbox_source_valid")
        ),
        sa.CheckConstraint("state IN ('pending', 'failed')", name=op.f("ck_inbox_state_valid")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox")),
    )
    op.create_index(op.f("ix_inbox_next"), "inbox", ["state", "priority", "id"], unique=False)
    op.create_index(op.f("ix_inbox_group"), "inbox", ["group_key", "id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_inbox_group"), table_name="inbox")
    op.drop_index(op.f("ix_inbox_next"), table_name="inbox")
    op.drop_table("inbox")
