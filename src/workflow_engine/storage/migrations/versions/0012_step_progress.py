"""step progress: what a running step has done so far, kept across tries and deliveries

`execution_steps` gets `progress` (JSON, null for every existing row): an llm step with `tools`
stores its completed model turns and tool calls there (steps/llm_tools.py), so a retried or
redelivered step resumes instead of asking the model again or running a tool twice.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "execution_steps",
        sa.Column("progress", sa.JSON().with_variant(JSONB(), "postgresql")),
    )


def downgrade() -> None:
    with op.batch_alter_table("execution_steps") as batch:
        batch.drop_column("progress")
