"""The queries of flow control (DESIGN.md section 14): the per-key running count made inside a
claim's transaction, and the debounced triggers' pending bursts (`debounces`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.domain.status import ExecutionStatus
from workflow_engine.storage.executions import now
from workflow_engine.storage.tables import debounces, executions

MAX_KEY_LENGTH = 255


async def set_concurrency_key(conn: AsyncConnection, execution_id: str, key: str) -> None:
    await conn.execute(
        update(executions).where(executions.c.id == execution_id).values(concurrency_key=key)
    )


async def running_with_key(conn: AsyncConnection, workflow_id: str, key: str) -> int:
    """How many of the workflow's executions with this concurrency key are `running`."""
    running = await conn.scalar(
        select(func.count())
        .select_from(executions)
        .where(
            executions.c.workflow_id == workflow_id,
            executions.c.concurrency_key == key,
            executions.c.status == ExecutionStatus.RUNNING.value,
        )
    )
    return int(running or 0)


async def hold(
    conn: AsyncConnection,
    *,
    trigger_id: str,
    workflow_id: str,
    key: str,
    input: Any,
    period_ms: int,
) -> datetime:
    """Record a call of a debounced trigger: the (trigger, key) burst now holds this input and
    fires `period_ms` from now (a later call pushes it back again). Returns when it fires."""
    stamp = now()
    fire_at = stamp + timedelta(milliseconds=period_ms)
    values = {
        "trigger_id": trigger_id,
        "key": key,
        "workflow_id": workflow_id,
        "input": input,
        "calls": 1,
        "fire_at": fire_at,
        "created_at": stamp,
        "updated_at": stamp,
    }
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert(debounces).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=[debounces.c.trigger_id, debounces.c.key],
        set_={
            "input": statement.excluded.input,
            "calls": debounces.c.calls + 1,
            "fire_at": statement.excluded.fire_at,
            "updated_at": statement.excluded.updated_at,
        },
    )
    await conn.execute(statement)
    return fire_at


@dataclass(frozen=True)
class Burst:
    """A burst whose time came, taken (deleted) by this caller."""

    trigger_id: str
    key: str
    workflow_id: str
    input: Any
    calls: int


async def take_if_due(conn: AsyncConnection, trigger_id: str, key: str) -> Burst | datetime | None:
    """Delete the (trigger, key) burst if its time came: only one caller's DELETE matches the
    row, so the burst is taken once however many ask. Its fire time if it is not due yet; None
    if there is no such burst (taken already)."""
    row = (
        await conn.execute(
            delete(debounces)
            .where(
                debounces.c.trigger_id == trigger_id,
                debounces.c.key == key,
                debounces.c.fire_at <= now(),
            )
            .returning(debounces.c.workflow_id, debounces.c.input, debounces.c.calls)
        )
    ).first()
    if row is not None:
        return Burst(trigger_id, key, str(row[0]), row[1], int(row[2]))
    fire_at: datetime | None = await conn.scalar(
        select(debounces.c.fire_at).where(
            debounces.c.trigger_id == trigger_id, debounces.c.key == key
        )
    )
    return fire_at


async def due(conn: AsyncConnection, *, limit: int) -> list[tuple[str, str]]:
    """(trigger, key) of the bursts whose time came, the most overdue first."""
    rows = await conn.execute(
        select(debounces.c.trigger_id, debounces.c.key)
        .where(debounces.c.fire_at <= now())
        .order_by(debounces.c.fire_at)
        .limit(limit)
    )
    return [(str(r[0]), str(r[1])) for r in rows]
