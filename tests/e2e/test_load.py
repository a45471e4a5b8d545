"""200 executions triggered at once over HTTP against one `serve`: none lost, none run twice."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from tests.e2e.conftest import StartServe
from tests.support.target import Target

pytestmark = pytest.mark.e2e

COUNT = 200


async def test_200_executions_at_once_all_complete_once(
    start_serve: StartServe, target: Target
) -> None:
    serve = start_serve()
    document = {
        "name": "load",
        "steps": [
            {
                "key": "call",
                "type": "http",
                "config": {"method": "POST", "url": f"{target.url}/count/load", "json": {}},
            },
            {"key": "shape", "type": "transform", "config": {"output": {"n": "{{ input.n }}"}}},
        ],
    }
    async with serve.async_client() as client:
        assert (await client.post("/api/workflows", json=document)).status_code == 201
        responses = await asyncio.gather(
            *(
                client.post("/api/workflows/load/execute", json={"input": {"n": n}})
                for n in range(COUNT)
            )
        )
        assert [r.status_code for r in responses] == [202] * COUNT
        ids = {r.json()["executionId"] for r in responses}
        assert len(ids) == COUNT

        deadline = time.monotonic() + 90
        while True:
            executions: list[dict[str, object]] = []
            cursor = None
            while True:
                params: dict[str, str | int] = {"workflowId": "load", "limit": 200}
                if cursor:
                    params["cursor"] = cursor
                page = (await client.get("/api/executions", params=params)).json()
                executions += page["executions"]
                cursor = page["nextCursor"]
                if not cursor:
                    break
            statuses = Counter(str(e["status"]) for e in executions)
            if statuses["completed"] == COUNT or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)

    assert {e["id"] for e in executions} == ids, "an accepted execution is missing"
    assert statuses == {"completed": COUNT}, statuses
    outputs = sorted(e["output"]["n"] for e in executions)  # type: ignore[index]
    assert outputs == list(range(COUNT))
    keys = Counter(hit.idempotency_key for hit in target.hits("count/load"))
    assert set(keys) == {f"{execution_id}:call" for execution_id in ids}
    assert set(keys.values()) == {1}, [k for k, n in keys.items() if n > 1]
