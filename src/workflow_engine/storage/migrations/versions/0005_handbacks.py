"""count graceful hand-backs apart from deliveries

A worker stopping past its grace period hands its executions back (their lease ends at once).
That is not a crash, so it must not count toward MAX_DELIVERIES: `handbacks` counts them, and a
claim's deliveries are its fencing token less its hand-backs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("handbacks", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("handbacks")
