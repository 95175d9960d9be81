"""The public status page: its stored snapshot and hand-set component states.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

Self-contained like 0001: it must not import the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "status_snapshot",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("etag", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_snapshot")),
    )
    op.create_table(
        "status_component_overrides",
        sa.Column("component_id", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("set_by", sa.Text(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("component_id", name=op.f("pk_status_component_overrides")),
    )


def downgrade() -> None:
    op.drop_table("status_component_overrides")
    op.drop_table("status_snapshot")
