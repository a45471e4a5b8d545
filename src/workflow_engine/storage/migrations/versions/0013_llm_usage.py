"""llm usage: one row per answered model request, summed per execution and per workflow

`llm_usage` holds what each model request of an llm step cost (prompt, completion and total
tokens as the server reported them) and when it was answered. Its rows go with their execution
(ON DELETE CASCADE).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from workflow_engine.storage.tables import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "llm_usage",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column(
            "execution_id",
            sa.String(36),
            sa.ForeignKey(
                "executions.id",
                ondelete="CASCADE",
                name="fk_llm_usage_execution_id_executions",
            ),
            nullable=False,
        ),
        sa.Column("workflow_id", sa.String(36), nullable=False),
        sa.Column("step_key", sa.String(200), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("total_tokens", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_llm_usage"),
    )
    op.create_index("ix_llm_usage_execution_id", "llm_usage", ["execution_id"])
    op.create_index("ix_llm_usage_workflow_id", "llm_usage", ["workflow_id"])


def downgrade() -> None:
    op.drop_table("llm_usage")
