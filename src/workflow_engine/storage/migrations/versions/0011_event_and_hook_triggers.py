"""event triggers and signed webhooks: how a trigger is found by event name or hook path

`triggers` gets `event_name` (an `event` trigger's event, indexed: `POST /api/events` starts
the workflows listening to it) and `hook_path` (a signed webhook's path under `/api/hooks/`,
unique: two workflows cannot serve one path). Existing triggers have neither.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("triggers") as batch:
        batch.add_column(sa.Column("event_name", sa.String(200)))
        batch.add_column(sa.Column("hook_path", sa.String(100)))
        batch.create_index("ix_triggers_event_name", ["event_name"])
        batch.create_index("uq_triggers_hook_path", ["hook_path"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("triggers") as batch:
        batch.drop_index("uq_triggers_hook_path")
        batch.drop_index("ix_triggers_event_name")
        batch.drop_column("hook_path")
        batch.drop_column("event_name")
