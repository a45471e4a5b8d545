"""LLM_LIMITS across processes (PostgreSQL + a private Redis): two `workers` processes share one
model's window in Redis; 20 executions of about 100 tokens each under a cap of 1,000 per window
all complete, and no window of the stored usage holds more than the cap."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest

from tests.distributed.conftest import MakeCluster
from tests.integration.test_llm_usage import assert_no_window_over
from tests.support.dbcheck import query
from tests.support.fake_llm import Answer, FakeLlm, run_fake_llm
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(180)]

WINDOW_MS = 3000
CAP = 1000
WORKFLOW = {
    "name": "capped",
    "retryMaxAttempts": 1,
    "steps": [
        {
            "key": "ask",
            "type": "llm",
            "config": {
                "model": "capped",
                "messages": [{"role": "user", "content": "{{ input.q }}"}],
                "maxTokens": 90,
            },
        }
    ],
}


@pytest.fixture
def fake() -> Iterator[FakeLlm]:
    with run_fake_llm() as server:
        yield server


def test_two_workers_processes_share_the_cap_in_redis(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster, fake: FakeLlm
) -> None:
    fake.script("capped", Answer("fine", prompt_tokens=60, completion_tokens=40))
    cluster = make_cluster(
        fresh_pg,
        redis_server.url,
        LLM_BASE_URL=fake.url,
        LLM_LIMITS=json.dumps({"capped": {"tokensPerMinute": CAP}}),
        LLM_LIMIT_WINDOW_MS=str(WINDOW_MS),
        EXECUTION_CONCURRENCY="10",
    )
    serve = cluster.start(workers=2)

    async def trigger() -> list[str]:
        async with serve.async_client() as api:
            assert (await api.post("/api/workflows", json=WORKFLOW)).status_code == 201
            ids = []
            for n in range(20):
                response = await api.post(
                    "/api/workflows/capped/execute", json={"input": {"q": f"Question {n}"}}
                )
                assert response.status_code == 202, response.text
                ids.append(response.json()["executionId"])
            return ids

    ids = asyncio.run(trigger())
    owners: set[str] = set()  # the workers processes seen running them
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = query(fresh_pg, "SELECT status, lease_owner FROM executions")
        owners |= {r["lease_owner"] for r in rows if r["lease_owner"]}
        if all(r["status"] in ("completed", "failed", "cancelled") for r in rows):
            break
        time.sleep(0.1)
    rows = query(fresh_pg, "SELECT id, status, error FROM executions")
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert {r["status"] for r in rows} == {"completed"}, [r["error"] for r in rows]
    assert len(owners) >= 2, owners
    assert len(fake.requests("capped")) == 20

    usage = query(
        fresh_pg,
        "SELECT total_tokens, created_at FROM llm_usage WHERE model = 'capped' ORDER BY created_at",
    )
    assert len(usage) == 20 and sum(r["total_tokens"] for r in usage) == 2000
    assert_no_window_over(usage, CAP, WINDOW_MS)
