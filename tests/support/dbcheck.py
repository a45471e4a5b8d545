"""Reading the system of record directly, as an operator would with psql."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from tests.support.databases import run_sync
from workflow_engine.storage.db import Database


def query(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Run one SELECT against `url` from synchronous test code."""

    async def run() -> list[dict[str, Any]]:
        db = Database(url)
        try:
            async with db.read() as conn:
                result = await conn.execute(text(sql), params)
                return [dict(row) for row in result.mappings()]
        finally:
            await db.dispose()

    return run_sync(run())


def status_counts(url: str) -> dict[str, int]:
    rows = query(url, "SELECT status, count(*) AS n FROM executions GROUP BY status")
    return {row["status"]: int(row["n"]) for row in rows}
