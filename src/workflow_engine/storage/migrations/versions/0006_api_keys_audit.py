"""named API keys with roles, the audit log, and who started an execution

`api_keys` holds each key's SHA-256 (never the key), its role and, for `trigger` keys, the
workflows it may execute. `audit_log` records who changed what. `executions.triggered_by` names
the key that started an execution through the API.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTCDateTime = sa.DateTime(timezone=True)

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("workflows", Json, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("last_used_at", UTCDateTime, nullable=True),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
    )
    op.create_index("uq_api_keys_key_hash", "api_keys", ["key_hash"], unique=True)
    op.create_index(
        "uq_api_keys_name_live",
        "api_keys",
        ["name"],
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    op.create_index("ix_api_keys_created_at_id", "api_keys", ["created_at", "id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("actor_key_id", sa.String(36), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target_type", sa.String(16), nullable=False),
        sa.Column("target_id", sa.String(36), nullable=False),
        sa.Column("detail", Json, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index(
        "ix_audit_log_target_type_target_id_at_id",
        "audit_log",
        ["target_type", "target_id", "at", "id"],
    )
    op.create_index("ix_audit_log_at_id", "audit_log", ["at", "id"])
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("triggered_by", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("triggered_by")
    op.drop_index("ix_audit_log_at_id", table_name="audit_log")
    op.drop_index("ix_audit_log_target_type_target_id_at_id", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_api_keys_created_at_id", table_name="api_keys")
    op.drop_index("uq_api_keys_name_live", table_name="api_keys")
    op.drop_index("uq_api_keys_key_hash", table_name="api_keys")
    op.drop_table("api_keys")
