"""a log line is stored once: `execution_logs.seq` numbers it among the execution's events

Until now each log line was written twice: an `execution_logs` row and a `log` event row in
`execution_events`. From here the executor writes the line once, in `execution_logs`, with the
`seq` its `log` event carries; a subscriber's catch-up reads the events and these lines merged by
`seq` (storage/executions.py `list_events`). Lines stored before keep a NULL `seq` (their `log`
events are still in `execution_events`), as do lines written outside an executor, which send no
event.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("execution_logs") as batch:
        batch.add_column(sa.Column("seq", sa.Integer()))


def downgrade() -> None:
    with op.batch_alter_table("execution_logs") as batch:
        batch.drop_column("seq")
