"""Many executions at once: every accepted one completes, each side effect happens exactly once."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import StartEngine
from tests.support.flows import sql, start
from tests.support.target import Target

pytestmark = pytest.mark.timeout(90)

N = 200


async def test_200_concurrent_executions_all_complete_once(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(
        {
            "name": "burst",
            "retryBackoffMs": 50,
            "steps": [
                {"key": "prep", "type": "transform", "config": {"output": {"n": "{{ input.n }}"}}},
                {
                    "key": "call",
                    "type": "http",
                    "config": {
                        "method": "POST",
                        "url": f"{target.url}/count/burst",
                        "json": {"n": "{{ steps.prep.output.n }}"},
                    },
                },
            ],
        }
    )
    responses = await asyncio.gather(
        *(
            running.client.post("/api/workflows/burst/execute", json={"input": {"n": n}})
            for n in range(N)
        )
    )
    assert [r.status_code for r in responses] == [202] * N
    ids = [r.json()["executionId"] for r in responses]
    assert len(set(ids)) == N

    async def statuses() -> dict[str, int]:
        rows = await sql(running, "SELECT status, count(*) AS n FROM executions GROUP BY status")
        return {row["status"]: int(row["n"]) for row in rows}

    deadline = asyncio.get_running_loop().time() + 60
    found = await statuses()
    while found.get("completed", 0) + found.get("failed", 0) < N:
        assert asyncio.get_running_loop().time() < deadline, f"not all final in 60 s: {found}"
        await asyncio.sleep(0.2)
        found = await statuses()
    assert found == {"completed": N}

    rows = await sql(running, "SELECT id, input, output FROM executions")
    assert {row["id"] for row in rows} == set(ids)
    step_rows = await sql(
        running, "SELECT status, count(*) AS n FROM execution_steps GROUP BY status"
    )
    assert {row["status"]: int(row["n"]) for row in step_rows} == {"completed": 2 * N}

    hits = target.hits("count/burst")
    keys = [h.idempotency_key for h in hits]
    repeated = {key for key in keys if keys.count(key) > 1}
    assert len(keys) == N, f"{len(keys)} hits for {N} executions; repeated: {repeated}"
    assert set(keys) == {f"{execution_id}:call" for execution_id in ids}

    # Spot-check what a user sees on a few of them.
    for n in (0, N // 2, N - 1):
        body = (await running.client.get(f"/api/executions/{ids[n]}")).json()
        assert body["status"] == "completed"
        assert body["input"] == {"n": n}
        assert body["output"]["status"] == 200
        assert [s["status"] for s in body["steps"]] == ["completed", "completed"]
