"""Playbook review reminders: one row per (playbook, due date), posted once.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

Self-contained like 0001: it must not import the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "playbook_review_reminders",
        sa.Column("playbook_id", sa.Text(), nullable=False),
        sa.Column("due_on", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("playbook_id", "due_on", name=op.f("pk_playbook_review_reminders")),
    )


def downgrade() -> None:
    op.drop_table("playbook_review_reminders")
