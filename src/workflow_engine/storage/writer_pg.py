"""A batch of executor writes as ONE PostgreSQL statement (writer.py's flush on PostgreSQL).

The generic flush sends BEGIN, the fence, then a statement per table and COMMIT: six to eight
round trips per batch. Here the whole batch travels as one JSON parameter and one statement of
data-modifying CTEs does it all: the fence (lease renewal and, for finishing executions, the
final status) and every insert and update joined to the fence's result, so the writes of an
execution whose token no longer matches are dropped inside the statement. A single statement is
atomic on its own, so no transaction is opened around it: one round trip per batch. New
executions a write starts (a failure alert) are inserted by the same statement, if the write is
made.

Same contract as the generic flush (tests/integration/test_writer.py runs on both databases).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine import fastjson

STEP_COLUMNS = (
    "status",
    "input",
    "output",
    "error",
    "started_at",
    "completed_at",
    "duration_ms",
    "retry_count",
    "progress",
)
_STEP_TYPES = (
    "status text, input jsonb, output jsonb, error text, started_at timestamptz, "
    "completed_at timestamptz, duration_ms bigint, retry_count int, progress jsonb"
)
# jsonb_to_recordset reads a JSON null as SQL NULL; SQLAlchemy's JSON type (and so the generic
# flush) stores None as JSON null. These put JSON null back, so both paths store the same.
_JSON_COLUMNS = ("input", "output")
_STEP_SET = ",\n        ".join(
    f"{c} = CASE WHEN '{c}' = ANY(u.cols) THEN "
    + (f"COALESCE(u.{c}, 'null'::jsonb)" if c in _JSON_COLUMNS else f"u.{c}")
    + f" ELSE t.{c} END"
    for c in STEP_COLUMNS
)

FLUSH = text(
    f"""
WITH batch AS (SELECT CAST(:batch AS jsonb) AS b),
fence AS (
    UPDATE executions AS e SET
        updated_at = :now,
        lease_expires_at = CASE WHEN f.finish THEN NULL
            WHEN e.lease_expires_at IS NULL OR e.lease_expires_at < :renew_before
                THEN :lease_until
            ELSE e.lease_expires_at END,
        lease_owner = CASE WHEN f.finish THEN NULL ELSE e.lease_owner END,
        status = CASE WHEN f.finish THEN f.status ELSE e.status END,
        output = CASE WHEN f.finish THEN COALESCE(f.output, 'null'::jsonb) ELSE e.output END,
        error = CASE WHEN f.finish THEN f.error ELSE e.error END,
        completed_at = CASE WHEN f.finish THEN f.completed_at ELSE e.completed_at END,
        duration_ms = CASE WHEN f.finish THEN f.duration_ms ELSE e.duration_ms END,
        retry_count = e.retry_count + COALESCE(f.retries, 0)
    FROM batch, jsonb_to_recordset(batch.b -> 'fence') AS f(
        id text, token int, finish boolean, status text, output jsonb, error text,
        completed_at timestamptz, duration_ms bigint, retries int)
    WHERE e.id = f.id AND e.fencing_token = f.token AND e.status = 'running'
    RETURNING e.id, e.fencing_token, e.cancel_requested_at
),
step_inserts AS (
    INSERT INTO execution_steps (id, execution_id, step_id, step_key, position, status, input,
        output, error, started_at, completed_at, duration_ms, retry_count, progress)
    SELECT s.id, s.execution_id, s.step_id, s.step_key, s.position, s.status,
        COALESCE(s.input, 'null'::jsonb), COALESCE(s.output, 'null'::jsonb), s.error,
        s.started_at, s.completed_at, s.duration_ms, COALESCE(s.retry_count, 0), s.progress
    FROM batch, jsonb_to_recordset(batch.b -> 'step_inserts') AS s(
        id text, execution_id text, token int, step_id text, step_key text, position int,
        {_STEP_TYPES})
    JOIN fence ON fence.id = s.execution_id AND fence.fencing_token = s.token
),
step_updates AS (
    UPDATE execution_steps AS t SET
        {_STEP_SET}
    FROM batch, jsonb_to_recordset(batch.b -> 'step_updates') AS u(
        execution_id text, token int, step_key text, cols text[], {_STEP_TYPES})
    JOIN fence ON fence.id = u.execution_id AND fence.fencing_token = u.token
    WHERE t.execution_id = u.execution_id AND t.step_key = u.step_key
),
logs AS (
    INSERT INTO execution_logs (id, execution_id, level, message, metadata, timestamp, seq)
    SELECT l.id, l.execution_id, l.level, l.message, COALESCE(l.metadata, 'null'::jsonb),
        l.timestamp, l.seq
    FROM batch, jsonb_to_recordset(batch.b -> 'logs') AS l(
        id text, execution_id text, token int, level text, message text, metadata jsonb,
        timestamp timestamptz, seq int)
    JOIN fence ON fence.id = l.execution_id AND fence.fencing_token = l.token
),
events AS (
    INSERT INTO execution_events (execution_id, seq, type, data, timestamp)
    SELECT v.execution_id, v.seq, v.type, v.data, v.timestamp
    FROM batch, jsonb_to_recordset(batch.b -> 'events') AS v(
        execution_id text, token int, seq int, type text, data jsonb, timestamp timestamptz)
    JOIN fence ON fence.id = v.execution_id AND fence.fencing_token = v.token
),
starts AS (
    INSERT INTO executions (id, workflow_id, workflow_version_id, trigger_id, status, input,
        retry_count, created_at, updated_at, idempotency_key, rerun_of_id, fencing_token,
        handbacks, parent_execution_id, parent_step_key)
    SELECT n.id, n.workflow_id, n.workflow_version_id, n.trigger_id, n.status,
        COALESCE(n.input, 'null'::jsonb), n.retry_count, n.created_at, n.updated_at,
        n.idempotency_key, n.rerun_of_id, n.fencing_token, 0, n.parent_execution_id,
        n.parent_step_key
    FROM batch, jsonb_to_recordset(batch.b -> 'starts') AS n(
        id text, source_id text, token int, workflow_id text, workflow_version_id text,
        trigger_id text, status text, input jsonb, retry_count int, created_at timestamptz,
        updated_at timestamptz, idempotency_key text, rerun_of_id text, fencing_token int,
        parent_execution_id text, parent_step_key text)
    JOIN fence ON fence.id = n.source_id AND fence.fencing_token = n.token
    ON CONFLICT (workflow_id, idempotency_key) DO NOTHING
)
SELECT id, fencing_token, cancel_requested_at FROM fence
"""
).bindparams(
    bindparam("now", type_=DateTime(timezone=True)),
    bindparam("lease_until", type_=DateTime(timezone=True)),
    bindparam("renew_before", type_=DateTime(timezone=True)),
)


async def flush(
    conn: AsyncConnection,
    payload: dict[str, list[dict[str, Any]]],
    *,
    now: datetime,
    lease_until: datetime,
    renew_before: datetime,
) -> list[tuple[str, int, datetime | None]]:
    """Run the batch; (execution_id, token, cancel_requested_at) of the writes that were made.
    A lease ending before `renew_before` is renewed to `lease_until` (see writer.py)."""
    params = {
        # Datetimes as ISO 8601: the statement casts them to timestamptz.
        "batch": fastjson.dumps(payload),
        "now": now,
        "lease_until": lease_until,
        "renew_before": renew_before,
    }
    rows = await conn.execute(FLUSH, params)
    return [(str(r[0]), int(r[1]), r[2]) for r in rows]
