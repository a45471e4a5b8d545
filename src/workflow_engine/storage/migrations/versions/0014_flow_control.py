"""flow control: per-key concurrency, priority, debounced triggers (DESIGN.md section 14)

`executions` gets `concurrency_key` (the workflow's `concurrency.key` rendered from the input;
indexed with the workflow and status for the count made inside each claim) and `priority`
(1..10, existing executions 5). `debounces` holds a debounced trigger's burst in progress: a
row per (trigger, key) with the latest input and when it fires.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from workflow_engine.storage.tables import Json, UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("concurrency_key", sa.String(255)))
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="5"))
    op.create_index(
        "ix_executions_workflow_id_concurrency_key_status",
        "executions",
        ["workflow_id", "concurrency_key", "status"],
        sqlite_where=sa.text("concurrency_key IS NOT NULL"),
        postgresql_where=sa.text("concurrency_key IS NOT NULL"),
    )
    op.create_table(
        "debounces",
        sa.Column(
            "trigger_id",
            sa.String(36),
            sa.ForeignKey(
                "triggers.id", ondelete="CASCADE", name="fk_debounces_trigger_id_triggers"
            ),
            nullable=False,
        ),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column(
            "workflow_id",
            sa.String(36),
            sa.ForeignKey(
                "workflows.id", ondelete="CASCADE", name="fk_debounces_workflow_id_workflows"
            ),
            nullable=False,
        ),
        sa.Column("input", Json),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("fire_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("trigger_id", "key", name="pk_debounces"),
    )
    op.create_index("ix_debounces_fire_at", "debounces", ["fire_at"])


def downgrade() -> None:
    op.drop_index("ix_debounces_fire_at", table_name="debounces")
    op.drop_table("debounces")
    op.drop_index("ix_executions_workflow_id_concurrency_key_status", table_name="executions")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("priority")
        batch.drop_column("concurrency_key")
