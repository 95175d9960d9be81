"""Slack's pace per method and channel, shared by replicas.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

Self-contained like 0001: it must not import the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slack_pace",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("tat", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_slack_pace")),
    )


def downgrade() -> None:
    op.drop_table("slack_pace")
