"""indexes for the charts' aggregates of finished executions

`GET /api/stats` (storage/stats.py) counts the executions finished in the last hour or day by
bucket, workflow and status, and takes percentiles of their durations. These two partial indexes
(finished executions only) hold every column it reads, by finish time and by workflow then
finish time, so it reads the window's entries and nothing else.

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0005"
branch_labels = None
depends_on = None

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


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="executions")
