"""The reads per-workflow rate limits need (engine/ratelimit.py), made inside the claim's
transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.domain.status import ExecutionStatus
from workflow_engine.storage.tables import executions, workflows


async def lock_workflow(conn: AsyncConnection, workflow_id: str) -> None:
    """Serialise the claim-then-count of one workflow's executions until the transaction ends:
    FOR UPDATE on its row on PostgreSQL (SQLite write transactions are already exclusive)."""
    lock = select(workflows.c.id).where(workflows.c.id == workflow_id)
    if conn.dialect.name == "postgresql":
        lock = lock.with_for_update()
    await conn.execute(lock)


async def running_count(conn: AsyncConnection, workflow_id: str) -> int:
    """How many of the workflow's executions are `running`."""
    running = await conn.scalar(
        select(func.count())
        .select_from(executions)
        .where(
            executions.c.workflow_id == workflow_id,
            executions.c.status == ExecutionStatus.RUNNING.value,
        )
    )
    return int(running or 0)


async def recent_starts(
    conn: AsyncConnection, workflow_id: str, *, since: datetime, limit: int
) -> list[datetime]:
    """When the workflow's executions started after `since`, latest first, at most `limit`."""
    rows = await conn.execute(
        select(executions.c.started_at)
        .where(executions.c.workflow_id == workflow_id, executions.c.started_at > since)
        .order_by(executions.c.started_at.desc())
        .limit(limit)
    )
    return list(rows.scalars().all())
