"""durable waits: executions may wait (timer, event) holding no lease

`executions` gets `wake_at` (when a waiting execution's timer fires), `waiting_since` and
`waited_ms`; `execution_waits` holds what each parked step waits for; `events` keeps the events
posted to `POST /api/events` (unmatched ones for EVENT_RETENTION_MS).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from workflow_engine.storage.tables import Json, UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("wake_at", UTCDateTime()))
        batch.add_column(sa.Column("waiting_since", UTCDateTime()))
        batch.add_column(
            sa.Column("waited_ms", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.create_index("ix_executions_status_wake_at", ["status", "wake_at"])
    op.create_table(
        "execution_waits",
        sa.Column(
            "execution_id",
            sa.String(36),
            sa.ForeignKey(
                "executions.id",
                ondelete="CASCADE",
                name="fk_execution_waits_execution_id_executions",
            ),
            nullable=False,
        ),
        sa.Column("step_key", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("event_name", sa.String(200)),
        sa.Column("event_key", sa.String(200)),
        sa.Column("until", UTCDateTime()),
        sa.Column("on_timeout", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("matched_at", UTCDateTime()),
        sa.Column("event_id", sa.String(36)),
        sa.Column("data", Json),
        sa.PrimaryKeyConstraint("execution_id", "step_key", name="pk_execution_waits"),
    )
    op.create_index(
        "ix_execution_waits_event_name_event_key", "execution_waits", ["event_name", "event_key"]
    )
    op.create_table(
        "events",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("data", Json),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("consumed_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_name_key_created_at", "events", ["name", "key", "created_at"])
    op.create_index("ix_events_expires_at", "events", ["expires_at"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("execution_waits")
    with op.batch_alter_table("executions") as batch:
        batch.drop_index("ix_executions_status_wake_at")
        batch.drop_column("waited_ms")
        batch.drop_column("waiting_since")
        batch.drop_column("wake_at")
