"""The llm step across processes (PostgreSQL + a private Redis): a `workers` process streams the
answer of a local OpenAI-compatible server, the deltas reach a Socket.io client of `serve` over
Redis as they are made, add up to the stored answer, are stored compacted, and the operator's API
key is in no row."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.distributed.conftest import MakeCluster
from tests.support.dbcheck import query
from tests.support.fake_llm import Answer, FakeLlm, run_fake_llm, tokens
from tests.support.realtime import socket_client
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(180)]

KEY = "sk-cluster-Key-5150"
WORKFLOW = {
    "name": "streamed",
    "steps": [
        {
            "key": "ask",
            "type": "llm",
            "config": {
                "model": "fake-model",
                "messages": [{"role": "user", "content": "{{ input.q }}"}],
                "stream": True,
            },
        }
    ],
}


@pytest.fixture
def fake() -> Iterator[FakeLlm]:
    with run_fake_llm(api_key=KEY) as server:
        yield server


async def test_a_workers_process_streams_an_answer_to_a_client_of_serve(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster, fake: FakeLlm
) -> None:
    content = " ".join(f"token{i}" for i in range(150))
    fake.script("fake-model", Answer(content, token_delay_s=0.005))
    # No HTTP_ALLOWLIST: the operator's LLM_BASE_URL on 127.0.0.1 is reached all the same.
    cluster = make_cluster(
        fresh_pg, redis_server.url, LLM_BASE_URL=fake.url, LLM_API_KEY=KEY, HTTP_ALLOWLIST=""
    )
    serve = cluster.start(workers=1)
    async with (
        serve.async_client() as api,
        socket_client(serve.url, auth={"token": serve.token}) as follower,
    ):
        assert (await api.post("/api/workflows", json=WORKFLOW)).status_code == 201
        response = await api.post("/api/workflows/streamed/execute", json={"input": {"q": "Go"}})
        assert response.status_code == 202, response.text
        execution_id = response.json()["executionId"]
        assert (await follower.call("subscribe", execution_id))["ok"]
        await follower.wait_final(execution_id, timeout=60)
        body = (await api.get(f"/api/executions/{execution_id}")).json()
        assert body["status"] == "completed", body
        assert body["output"]["content"] == content
        assert body["output"]["usage"]["completionTokens"] == len(tokens(content))
        shown = (await api.get(f"/api/executions/{execution_id}")).text

    deltas = [p for name, p in follower.of(execution_id) if name == "step_delta"]
    assert "".join(p["delta"] for p in deltas) == content
    seqs = [p["seq"] for _, p in follower.of(execution_id)]
    assert seqs == list(range(1, len(seqs) + 1))
    rows = query(
        fresh_pg,
        "SELECT count(*) AS n FROM execution_events WHERE execution_id = :id"
        " AND type = 'step_delta'",
        id=execution_id,
    )
    assert rows[0]["n"] == len(deltas) < len(tokens(content)) // 5
    assert KEY not in shown
    for table, column in (
        ("execution_steps", "execution_id"),
        ("execution_logs", "execution_id"),
        ("execution_events", "execution_id"),
        ("executions", "id"),
    ):
        found = query(fresh_pg, f"SELECT * FROM {table} WHERE {column} = :id", id=execution_id)
        assert found and KEY not in json.dumps(found, default=str), table
    assert KEY not in cluster.logs()
