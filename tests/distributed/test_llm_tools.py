"""Workflows as tools across processes (PostgreSQL + a private Redis): the `workers` process
running an llm step's tool loop is killed (-9) during the second tool call, another one resumes
it: the first call's child is not run again, the completed model turn is not asked again, the
second call's child is joined rather than started twice, and the final answer is stored."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.distributed.conftest import MakeCluster
from tests.support.dbcheck import query
from tests.support.fake_llm import Answer, Call, FakeLlm, run_fake_llm
from tests.support.graphs import wait_for
from tests.support.process import wait_execution
from tests.support.servers import RedisServer
from tests.support.target import Target

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(180)]


def tool_workflow(target: Target) -> dict[str, object]:
    """`lookup`: calls the target's /slowcount/tool-{n} (waiting `ms` there), so the test can
    count how often each call's child ran its step."""
    return {
        "name": "lookup",
        "description": "Looks a number up",
        "inputSchema": {
            "type": "object",
            "properties": {"n": {"type": "integer"}, "ms": {"type": "integer"}},
            "required": ["n", "ms"],
        },
        "retryBackoffMs": 100,
        "steps": [
            {
                "key": "get",
                "type": "http",
                "config": {
                    "url": f"{target.url}/slowcount/tool-{{{{ input.n }}}}?ms={{{{ input.ms }}}}"
                },
            }
        ],
        "output": "{{ input.n * 10 }}",
    }


AGENT = {
    "name": "agent",
    "steps": [
        {
            "key": "ask",
            "type": "llm",
            "config": {
                "model": "agent-model",
                "messages": [{"role": "user", "content": "{{ input.q }}"}],
                "tools": ["lookup"],
            },
        }
    ],
}


@pytest.fixture
def fake() -> Iterator[FakeLlm]:
    with run_fake_llm() as server:
        yield server


def test_kill_9_during_the_second_tool_call_repeats_no_turn_and_no_call(
    fresh_pg: str,
    redis_server: RedisServer,
    target: Target,
    make_cluster: MakeCluster,
    fake: FakeLlm,
) -> None:
    fake.script(
        "agent-model",
        Answer(
            "", tool_calls=(Call("lookup", {"n": 1, "ms": 1}), Call("lookup", {"n": 2, "ms": 4000}))
        ),
        Answer("10 and 20"),
    )
    cluster = make_cluster(fresh_pg, redis_server.url, LLM_BASE_URL=fake.url)
    serve = cluster.start_serve()
    [victim] = cluster.start_workers(1)
    with serve.client() as client:
        assert client.post("/api/workflows", json=tool_workflow(target)).status_code == 201
        assert client.post("/api/workflows", json=AGENT).status_code == 201
        response = client.post("/api/workflows/agent/execute", json={"input": {"q": "Look up"}})
        assert response.status_code == 202, response.text
        execution_id = response.json()["executionId"]

        wait_for(lambda: target.hits("slowcount/tool-2"), "the second tool call to run", 60)
        victim.kill()
        assert len(fake.requests("agent-model")) == 1
        cluster.start_workers(1)
        body = wait_execution(client, execution_id, timeout=90)

    assert body["status"] == "completed", cluster.logs()
    assert body["output"]["content"] == "10 and 20"
    assert body["output"]["turns"] == 2
    # The first call's child ran once; the completed model turn was not asked again.
    assert len(target.hits("slowcount/tool-1")) == 1
    assert len(target.hits("slowcount/tool-2")) >= 2  # its child was joined and run on
    requests = fake.requests("agent-model")
    assert len(requests) == 2
    assert [m["role"] for m in requests[1].body["messages"]] == [
        "user",
        "assistant",
        "tool",
        "tool",
    ]
    assert [m["content"] for m in requests[1].body["messages"][2:]] == ["10", "20"]
    children = query(
        fresh_pg,
        "SELECT id, status, input FROM executions WHERE parent_execution_id = :id"
        " ORDER BY created_at",
        id=execution_id,
    )
    assert [(c["status"], c["input"]["n"]) for c in children] == [
        ("completed", 1),
        ("completed", 2),
    ]
    assert [c["executionId"] for c in body["output"]["toolCalls"]] == [c["id"] for c in children]
