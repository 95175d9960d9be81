"""Timeline events, outputs on the delivery queue, incident roles and updates.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

Self-contained like 0001: it must not import the models. Existing incidents
get an ``opened`` event (and ``acknowledged``/``resolved`` where they are), so
``@nexus timeline`` has a start for incidents older than the timeline.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "timeline_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("public", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timeline_events")),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_timeline_events_incident_id_incidents"),
        ),
    )
    op.create_index("ix_timeline_events_incident", "timeline_events", ["incident_id", "id"])
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("output", sa.Text(), server_default="slack", nullable=False))
        batch.drop_constraint(op.f("ck_outbox_method_valid"), type_="check")
        batch.create_index("ix_outbox_output_state", ["output", "state"])
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("roles", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("public_status", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("last_public_update_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("update_reminded_at", sa.DateTime(timezone=True), nullable=True))
    _backfill()


def _backfill() -> None:
    incidents = sa.table(
        "incidents",
        sa.column("id", sa.Integer()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("acknowledged_at", sa.DateTime(timezone=True)),
        sa.column("acknowledged_by", sa.Text()),
        sa.column("resolved_at", sa.DateTime(timezone=True)),
        sa.column("status", sa.Text()),
    )
    events = sa.table(
        "timeline_events",
        sa.column("incident_id", sa.Integer()),
        sa.column("kind", sa.Text()),
        sa.column("actor", sa.Text()),
        sa.column("public", sa.Boolean()),
        sa.column("facts", sa.JSON()),
        sa.column("at", sa.DateTime(timezone=True)),
    )
    bind = op.get_bind()
    rows = []
    for row in bind.execute(sa.select(incidents).order_by(incidents.c.id)):
        migrated = {"migrated": True}
        rows.append(
            {
                "incident_id": row.id,
                "kind": "opened",
                "actor": "nexus-bot",
                "public": True,
                "facts": migrated,
                "at": row.created_at,
            }
        )
        if row.acknowledged_at is not None:
            rows.append(
                {
                    "incident_id": row.id,
                    "kind": "acknowledged",
                    "actor": row.acknowledged_by or "unknown",
                    "public": False,
                    "facts": migrated,
                    "at": row.acknowledged_at,
                }
            )
        if row.status == "resolved" and row.resolved_at is not None:
            rows.append(
                {
                    "incident_id": row.id,
                    "kind": "resolved",
                    "actor": "unknown",
                    "public": True,
                    "facts": migrated,
                    "at": row.resolved_at,
                }
            )
    if rows:
        op.bulk_insert(events, rows)


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("update_reminded_at")
        batch.drop_column("last_public_update_at")
        batch.drop_column("public_status")
        batch.drop_column("roles")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_output_state")
        batch.create_check_constraint(
            op.f("ck_outbox_method_valid"), "method IN ('chat.postMessage', 'chat.update')"
        )
        batch.drop_column("output")
    op.drop_index("ix_timeline_events_incident", table_name="timeline_events")
    op.drop_table("timeline_events")
