"""Finished executions written straight into the database, at the times and with the statuses a
test chooses (the engine would stamp them with the clock)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from workflow_engine.ids import new_id
from workflow_engine.storage.db import Database
from workflow_engine.storage.tables import executions


@dataclass(frozen=True)
class Finished:
    status: str
    completed_at: datetime
    duration_ms: int | None = 10


async def insert_finished(
    db: Database, workflow_id: str, version_id: str, rows: list[Finished]
) -> list[str]:
    """One execution row per entry, ended with its status at its time; their ids."""
    values = []
    for row in rows:
        took = timedelta(milliseconds=row.duration_ms or 0)
        started = row.completed_at - took if row.duration_ms is not None else None
        values.append(
            {
                "id": new_id(),
                "workflow_id": workflow_id,
                "workflow_version_id": version_id,
                "status": row.status,
                "input": {},
                "started_at": started,
                "completed_at": row.completed_at,
                "duration_ms": row.duration_ms,
                "retry_count": 0,
                "created_at": started or row.completed_at,
                "updated_at": row.completed_at,
                "fencing_token": 1,
            }
        )
    async with db.write() as conn:
        await conn.execute(executions.insert(), values)
    return [v["id"] for v in values]
