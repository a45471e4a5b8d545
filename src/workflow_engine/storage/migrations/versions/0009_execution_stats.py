"""the charts' aggregates: indexes of finished executions, and the rollup of past quarter hours

`GET /api/stats` (storage/stats.py) counts the executions finished in the last hour or day by
bucket, workflow and status, and takes percentiles of their durations. Two partial indexes
(finished executions only) hold every column it reads, by finish time and by workflow then
finish time, so it reads the window's entries and nothing else. `execution_rollups` keeps each
past minute and quarter hour counted once (storage/stats_rollup.py), so a chart reads a row per
bucket instead of every execution of the hour or day.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
FINISHED = sa.text("completed_at IS NOT NULL")
INDEXES = {
    "ix_executions_completed_at_workflow_id_status_duration_ms": [
        "completed_at",
        "workflow_id",
        "status",
        "duration_ms",
    ],
    "ix_executions_workflow_id_completed_at_status_duration_ms": [
        "workflow_id",
        "completed_at",
        "status",
        "duration_ms",
    ],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(
            name,
            "executions",
            columns,
            sqlite_where=FINISHED,
            postgresql_where=FINISHED,
        )
    op.create_table(
        "execution_rollups",
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket_seconds", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sa.String(length=36), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("cancelled", sa.Integer(), nullable=False),
        sa.Column("p50_ms", sa.Float(), nullable=True),
        sa.Column("p95_ms", sa.Float(), nullable=True),
        sa.Column("durations", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "bucket_start", "bucket_seconds", "workflow_id", name="pk_execution_rollups"
        ),
    )


def downgrade() -> None:
    op.drop_table("execution_rollups")
    for name in INDEXES:
        op.drop_index(name, table_name="executions")
