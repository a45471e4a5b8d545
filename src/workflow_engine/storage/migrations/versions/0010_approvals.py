"""approvals: an `approval` step waits for a person's decision

`execution_waits` gets `message` (what the person is asked, shown on the execution page) and
`on_reject` (`fail` or `continue`). A wait of kind `approval` is met by a decision
(`POST /api/executions/{id}/steps/{stepKey}/approve|reject`): `matched_at` is when it was made
and `data` the step's output `{"approved", "by", "comment", "at"}`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("execution_waits") as batch:
        batch.add_column(sa.Column("message", sa.Text()))
        batch.add_column(sa.Column("on_reject", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("execution_waits") as batch:
        batch.drop_column("on_reject")
        batch.drop_column("message")
