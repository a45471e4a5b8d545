"""room in the executions table's pages for in-place (HOT) updates

A running execution's row is updated at every checkpoint. When no indexed column changes and
its page has room, PostgreSQL updates it in place without touching the table's six indexes;
pages filled to 100% leave no room, so every update rewrote every index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE executions SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE executions RESET (fillfactor)")
