"""indexes for retention: finished executions by finish time, and re-run links

`ix_executions_completed_at_id` lets retention find the oldest finished executions in
(completed_at, id) order without scanning the table. `ix_executions_rerun_of_id` serves the
`rerun_of_id ... ON DELETE SET NULL` foreign key: without it, deleting an execution makes the
database scan the whole table for re-runs pointing at it. Both are partial (rows whose column is
set): unfinished executions and executions that are not re-runs add no entry.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_executions_completed_at_id",
        "executions",
        ["completed_at", "id"],
        postgresql_where=sa.text("completed_at IS NOT NULL"),
        sqlite_where=sa.text("completed_at IS NOT NULL"),
    )
    op.create_index(
        "ix_executions_rerun_of_id",
        "executions",
        ["rerun_of_id"],
        postgresql_where=sa.text("rerun_of_id IS NOT NULL"),
        sqlite_where=sa.text("rerun_of_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_executions_rerun_of_id", table_name="executions")
    op.drop_index("ix_executions_completed_at_id", table_name="executions")
