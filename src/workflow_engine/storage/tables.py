"""The schema (DESIGN.md section 3), as SQLAlchemy Core tables; the same on SQLite and PostgreSQL.

The hot paths use Core statements rather than ORM objects: fewer round trips, explicit SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Json: Any = JSON().with_variant(JSONB(), "postgresql")


def _id(name: str = "id", *args: Any, **kwargs: Any) -> Column[str]:
    return Column(name, String(36), *args, **kwargs)


workflows = Table(
    "workflows",
    metadata,
    _id(primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text),
    Column("active_version_id", String(36)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("archived_at", UTCDateTime),
    Index(
        "uq_workflows_name_live",
        "name",
        unique=True,
        sqlite_where=text("archived_at IS NULL"),
        postgresql_where=text("archived_at IS NULL"),
    ),
    Index("ix_workflows_created_at_id", "created_at", "id"),
)

workflow_versions = Table(
    "workflow_versions",
    metadata,
    _id(primary_key=True),
    _id("workflow_id", ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("uq_workflow_versions_workflow_id_version", "workflow_id", "version", unique=True),
)

workflow_steps = Table(
    "workflow_steps",
    metadata,
    _id(primary_key=True),
    _id(
        "workflow_version_id",
        ForeignKey("workflow_versions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("position", Integer, nullable=False),
    Column("key", String(64), nullable=False),
    Column("name", String(200)),
    Column("type", String(64), nullable=False),
    Column("config", Json, nullable=False),
    Index("uq_workflow_steps_version_key", "workflow_version_id", "key", unique=True),
)

triggers = Table(
    "triggers",
    metadata,
    _id(primary_key=True),
    _id("workflow_id", ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
    Column("type", String(16), nullable=False),
    Column("config", Json, nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # What finds a trigger (DESIGN.md section 14), copied from `config` on save: an `event`
    # trigger's event name; a signed webhook's path (unique; cleared when the workflow is
    # archived, which frees the path).
    Column("event_name", String(200)),
    Column("hook_path", String(100)),
    Index("ix_triggers_workflow_id", "workflow_id"),
    Index("ix_triggers_event_name", "event_name"),
    Index("uq_triggers_hook_path", "hook_path", unique=True),
)

executions = Table(
    "executions",
    metadata,
    _id(primary_key=True),
    _id("workflow_id", ForeignKey("workflows.id"), nullable=False),
    _id("workflow_version_id", ForeignKey("workflow_versions.id"), nullable=False),
    _id("trigger_id", ForeignKey("triggers.id", ondelete="SET NULL")),
    Column("status", String(16), nullable=False),
    Column("input", Json),
    Column("output", Json),
    Column("error", Text),
    Column("started_at", UTCDateTime),
    Column("completed_at", UTCDateTime),
    Column("duration_ms", BigInteger),
    Column("retry_count", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # What the engine needs beyond the seed's columns:
    Column("idempotency_key", String(255)),
    _id("rerun_of_id", ForeignKey("executions.id", ondelete="SET NULL")),
    Column("lease_owner", String(128)),
    Column("lease_expires_at", UTCDateTime),
    Column("fencing_token", Integer, nullable=False, default=0),
    # Graceful hand-backs (a worker stopping): claims that do not count as deliveries.
    Column("handbacks", Integer, nullable=False, default=0, server_default="0"),
    Column("cancel_requested_at", UTCDateTime),
    # A child execution (a `workflow` step's): its parent and the parent's step.
    _id("parent_execution_id", ForeignKey("executions.id", ondelete="SET NULL")),
    Column("parent_step_key", String(80)),
    # Who started it: the API key's name (or API_TOKEN); None for triggers, schedules, children.
    Column("triggered_by", String(100)),
    # Durable waits (DESIGN.md section 14): when a `waiting` execution's timer fires, since when
    # it waits, and how long its earlier waits lasted (not counted toward its timeout).
    Column("wake_at", UTCDateTime),
    Column("waiting_since", UTCDateTime),
    Column("waited_ms", BigInteger, nullable=False, default=0, server_default="0"),
    # Flow control (DESIGN.md section 14): the workflow's `concurrency.key` rendered from the
    # input (set when it is first claimed), and the priority it was started with (1..10).
    Column("concurrency_key", String(255)),
    Column("priority", Integer, nullable=False, default=5, server_default="5"),
    Index("ix_executions_created_at_id", "created_at", "id"),
    Index("ix_executions_parent_execution_id", "parent_execution_id"),
    Index("ix_executions_workflow_id_created_at_id", "workflow_id", "created_at", "id"),
    Index("ix_executions_status_created_at_id", "status", "created_at", "id"),
    Index("ix_executions_status_lease_expires_at", "status", "lease_expires_at"),
    Index("ix_executions_status_wake_at", "status", "wake_at"),
    Index(
        "ix_executions_workflow_id_concurrency_key_status",
        "workflow_id",
        "concurrency_key",
        "status",
        sqlite_where=text("concurrency_key IS NOT NULL"),
        postgresql_where=text("concurrency_key IS NOT NULL"),
    ),
    # Retention (storage/retention.py): the oldest finished executions first; and the re-run
    # link's ON DELETE SET NULL, which would otherwise scan the table per deleted row.
    Index(
        "ix_executions_completed_at_id",
        "completed_at",
        "id",
        sqlite_where=text("completed_at IS NOT NULL"),
        postgresql_where=text("completed_at IS NOT NULL"),
    ),
    Index(
        "ix_executions_rerun_of_id",
        "rerun_of_id",
        sqlite_where=text("rerun_of_id IS NOT NULL"),
        postgresql_where=text("rerun_of_id IS NOT NULL"),
    ),
    # The charts' aggregates (storage/stats.py) of the executions finished in a period, of every
    # workflow or of one: each index holds every column they read (an index-only scan). Rows not
    # finished have no completed_at and stay out, and the columns change once, at the finish,
    # so a checkpoint's update stays in place (HOT).
    Index(
        "ix_executions_completed_at_workflow_id_status_duration_ms",
        "completed_at",
        "workflow_id",
        "status",
        "duration_ms",
        sqlite_where=text("completed_at IS NOT NULL"),
        postgresql_where=text("completed_at IS NOT NULL"),
    ),
    Index(
        "ix_executions_workflow_id_completed_at_status_duration_ms",
        "workflow_id",
        "completed_at",
        "status",
        "duration_ms",
        sqlite_where=text("completed_at IS NOT NULL"),
        postgresql_where=text("completed_at IS NOT NULL"),
    ),
    Index(
        "uq_executions_workflow_id_idempotency_key", "workflow_id", "idempotency_key", unique=True
    ),
)

execution_steps = Table(
    "execution_steps",
    metadata,
    _id(primary_key=True),
    _id("execution_id", ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
    _id("step_id", ForeignKey("workflow_steps.id"), nullable=False),
    # A step's key, or `key[index]` for an item of a map step.
    Column("step_key", String(80), nullable=False),
    Column("position", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("input", Json),
    Column("output", Json),
    Column("error", Text),
    Column("started_at", UTCDateTime),
    Column("completed_at", UTCDateTime),
    Column("duration_ms", BigInteger),
    Column("retry_count", Integer, nullable=False, default=0),
    # What a running step has done so far (an llm step's turns and tool calls), kept across its
    # tries and deliveries: steps/llm_tools.py.
    Column("progress", Json),
    Index("uq_execution_steps_execution_id_step_key", "execution_id", "step_key", unique=True),
)

execution_logs = Table(
    "execution_logs",
    metadata,
    _id(primary_key=True),
    _id("execution_id", ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
    Column("level", String(8), nullable=False),
    Column("message", Text, nullable=False),
    Column("metadata", Json),
    Column("timestamp", UTCDateTime, nullable=False),
    # The seq of the line's `log` event: a line is stored once, here, and replayed among the
    # events from here (NULL for lines written before 0015 and outside an executor).
    Column("seq", Integer),
    Index("ix_execution_logs_execution_id_timestamp", "execution_id", "timestamp"),
)

execution_events = Table(
    "execution_events",
    metadata,
    _id("execution_id", ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("type", String(32), nullable=False),
    Column("data", Json, nullable=False),
    Column("timestamp", UTCDateTime, nullable=False),
)
"""Every event sent for an execution but its `log` events, in `seq` order: a subscriber catches up
from here and `execution_logs` (storage/executions.py `list_events`)."""


api_keys = Table(
    "api_keys",
    metadata,
    _id(primary_key=True),
    Column("name", String(100), nullable=False),
    Column("role", String(16), nullable=False),
    # SHA-256 of the key, in hex: the key itself is never stored (domain/access.py).
    Column("key_hash", String(64), nullable=False),
    Column("prefix", String(16), nullable=False),
    # `trigger` keys: the ids of the workflows they may execute (a JSON list); else NULL.
    Column("workflows", Json),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    Index("uq_api_keys_key_hash", "key_hash", unique=True),
    Index(
        "uq_api_keys_name_live",
        "name",
        unique=True,
        sqlite_where=text("revoked_at IS NULL"),
        postgresql_where=text("revoked_at IS NULL"),
    ),
    Index("ix_api_keys_created_at_id", "created_at", "id"),
)
"""Named API keys with a role (README "API keys and roles")."""

audit_log = Table(
    "audit_log",
    metadata,
    _id(primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    # The key's name (kept when the key is revoked), API_TOKEN, anonymous, system or cli.
    Column("actor", String(100), nullable=False),
    _id("actor_key_id"),
    Column("action", String(32), nullable=False),
    Column("target_type", String(16), nullable=False),
    _id("target_id", nullable=False),
    Column("detail", Json),
    Index("ix_audit_log_target_type_target_id_at_id", "target_type", "target_id", "at", "id"),
    Index("ix_audit_log_at_id", "at", "id"),
)
"""Who changed what: one row per change made through the API, the UI or the CLI."""


execution_waits = Table(
    "execution_waits",
    metadata,
    _id("execution_id", ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True),
    Column("step_key", String(80), primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("event_name", String(200)),
    Column("event_key", String(200)),
    Column("until", UTCDateTime),
    Column("on_timeout", String(16), nullable=False, default="fail"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("matched_at", UTCDateTime),
    _id("event_id"),
    Column("data", Json),
    Column("message", Text),
    Column("on_reject", String(16)),
    Index("ix_execution_waits_event_name_event_key", "event_name", "event_key"),
)
"""What a parked step waits for (`kind` `delay`, `event` or `approval`), until when, and once
an event or a decision met it, that event's data or the decision (`{"approved", "by", "comment",
"at"}`). Rows of steps that have since finished are left alone."""

events = Table(
    "events",
    metadata,
    _id(primary_key=True),
    Column("name", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("data", Json),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("matched", Integer, nullable=False, default=0),
    Column("consumed_at", UTCDateTime),
    Index("ix_events_name_key_created_at", "name", "key", "created_at"),
    Index("ix_events_expires_at", "expires_at"),
)
"""Events posted to `POST /api/events`. One that met no wait is kept until `expires_at`
(EVENT_RETENTION_MS) for a wait that registers later, which consumes it (`consumed_at`)."""


execution_rollups = Table(
    "execution_rollups",
    metadata,
    # The start first: reads take a range of starts, the clean-up deletes the oldest ones.
    Column("bucket_start", UTCDateTime, primary_key=True),
    Column("bucket_seconds", Integer, primary_key=True),  # 60 or 900
    # A workflow's id, or "*" for every workflow's (that row marks the quarter hour rolled up).
    Column("workflow_id", String(36), primary_key=True),
    Column("completed", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("cancelled", Integer, nullable=False),
    Column("p50_ms", Float),
    Column("p95_ms", Float),
    Column("durations", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
"""The executions finished in each past minute and quarter hour, counted once
(storage/stats_rollup.py): the charts read these instead of every execution. `durations` is a
histogram (domain/percentiles.py) that adds up across buckets."""


llm_usage = Table(
    "llm_usage",
    metadata,
    _id(primary_key=True),
    _id("execution_id", ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
    _id("workflow_id", nullable=False),
    Column("step_key", String(200), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("model", String(200), nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("total_tokens", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_llm_usage_execution_id", "execution_id"),
    Index("ix_llm_usage_workflow_id", "workflow_id"),
)
"""One row per answered model request (storage/usage.py): what it cost, as the server reported
it, at the time of the answer. Tries that failed afterwards (an answer not matching its schema)
keep theirs: those tokens were spent. Summed on read per execution and per workflow."""


debounces = Table(
    "debounces",
    metadata,
    _id("trigger_id", ForeignKey("triggers.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(255), primary_key=True),
    _id("workflow_id", ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
    Column("input", Json),
    Column("calls", Integer, nullable=False, default=1),
    Column("fire_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_debounces_fire_at", "fire_at"),
)
"""A debounced trigger's burst in progress (engine/debounce.py): one row per (trigger, rendered
key) holding the latest call's input; every call pushes `fire_at` back. The execution starts
when `fire_at` passes, in the transaction that deletes the row (whoever deletes it, once)."""
