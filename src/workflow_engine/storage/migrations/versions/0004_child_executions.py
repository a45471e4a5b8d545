"""child executions (`workflow` steps) and map item rows

`executions.parent_execution_id` and `parent_step_key` link a child execution to the step that
started it; `execution_steps.step_key` grows to hold a map item's key (`fetch[9999]`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("parent_execution_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("parent_step_key", sa.String(80), nullable=True))
        batch.create_foreign_key(
            "fk_executions_parent_execution_id_executions",
            "executions",
            ["parent_execution_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index("ix_executions_parent_execution_id", ["parent_execution_id"])
    with op.batch_alter_table("execution_steps") as batch:
        batch.alter_column("step_key", type_=sa.String(80), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("execution_steps") as batch:
        batch.alter_column("step_key", type_=sa.String(64), existing_nullable=False)
    with op.batch_alter_table("executions") as batch:
        batch.drop_index("ix_executions_parent_execution_id")
        batch.drop_constraint("fk_executions_parent_execution_id_executions", type_="foreignkey")
        batch.drop_column("parent_step_key")
        batch.drop_column("parent_execution_id")
