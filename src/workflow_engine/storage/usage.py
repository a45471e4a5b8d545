"""Token usage of llm steps: a row per answered model request (`llm_usage`), summed on read per
execution and per workflow."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.sql.elements import ColumnElement

from workflow_engine.ids import new_id
from workflow_engine.storage.db import Connection
from workflow_engine.storage.tables import llm_usage

__all__ = ["Usage", "for_execution", "for_workflow", "record"]


@dataclass(frozen=True)
class Usage:
    """Tokens spent, and the model requests that spent them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    requests: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "totalTokens": self.total_tokens,
            "requests": self.requests,
        }


async def record(
    conn: Connection,
    *,
    execution_id: str,
    workflow_id: str,
    step_key: str,
    attempt: int,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    total_tokens: int,
    at: datetime,
) -> None:
    await conn.execute(
        insert(llm_usage).values(
            id=new_id(),
            execution_id=execution_id,
            workflow_id=workflow_id,
            step_key=step_key,
            attempt=attempt,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=total_tokens,
            created_at=at,
        )
    )


async def for_execution(conn: Connection, execution_id: str) -> Usage:
    return await _summed(conn, llm_usage.c.execution_id == execution_id)


async def for_workflow(conn: Connection, workflow_id: str) -> Usage:
    """Over the workflow's executions still stored (retention removes usage with them)."""
    return await _summed(conn, llm_usage.c.workflow_id == workflow_id)


async def _summed(conn: Connection, where: ColumnElement[bool]) -> Usage:
    row = (
        await conn.execute(
            select(
                func.coalesce(func.sum(llm_usage.c.prompt_tokens), 0),
                func.coalesce(func.sum(llm_usage.c.completion_tokens), 0),
                func.coalesce(func.sum(llm_usage.c.total_tokens), 0),
                func.count(),
            ).where(where)
        )
    ).one()
    return Usage(int(row[0]), int(row[1]), int(row[2]), int(row[3]))
