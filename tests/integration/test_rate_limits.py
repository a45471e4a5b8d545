"""Per-workflow rate limits: over a limit an execution stays pending and is delayed, not failed."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from tests.conftest import StartEngine
from workflow_engine.storage.tables import executions


async def test_max_concurrent_is_never_exceeded(db_url: str, start_engine: StartEngine) -> None:
    running = await start_engine(db_url, execution_concurrency=5)
    workflow = await running.create_workflow(
        {
            "name": "limited",
            "rateLimitMaxConcurrent": 2,
            "steps": [{"key": "wait", "type": "delay", "config": {"ms": 150}}],
        }
    )
    ids = [await running.execute("limited") for _ in range(10)]
    peak = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        async with running.engine.db.read() as conn:
            rows = dict(
                (
                    await conn.execute(
                        select(executions.c.status, func.count())
                        .where(executions.c.workflow_id == workflow["id"])
                        .group_by(executions.c.status)
                    )
                ).all()
            )
        peak = max(peak, rows.get("running", 0))
        if rows.get("completed", 0) == 10:
            break
        await asyncio.sleep(0.02)
    assert peak <= 2
    assert peak == 2, "the limit should still let two run at once"
    for execution_id in ids:
        body = await running.wait(execution_id)
        assert body["status"] == "completed"


async def test_per_minute_limit_delays_the_rest(db_url: str, start_engine: StartEngine) -> None:
    running = await start_engine(db_url)
    await running.create_workflow(
        {
            "name": "per-minute",
            "rateLimitPerMinute": 3,
            "steps": [{"key": "t", "type": "transform", "config": {"output": 1}}],
        }
    )
    ids = [await running.execute("per-minute") for _ in range(5)]

    async def statuses() -> list[str]:
        return [(await running.client.get(f"/api/executions/{i}")).json()["status"] for i in ids]

    for _ in range(200):  # three complete (however slow the machine)...
        if (await statuses()).count("completed") >= 3:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # ...and the other two still wait, well within the minute
    now = await statuses()
    assert now.count("completed") == 3, now
    assert now.count("pending") == 2, now
