"""Workflows as tools for the `llm` step (`tools`, `maxTurns`; DESIGN.md section 14) against the
fake OpenAI-compatible server, on SQLite and PostgreSQL: each tool call a child execution, its
result sent back to the model, invalid arguments told to the model without a child, maxTurns,
and a workflow's `inputSchema` checked when it is saved."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Running, StartEngine
from tests.support.fake_llm import Answer, Call, Failure, FakeLlm, run_fake_llm
from tests.support.flows import sql, start
from tests.support.pages import page

pytestmark = pytest.mark.timeout(60)

DOUBLE = {
    "name": "double",
    "description": "Doubles a number",
    "inputSchema": {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
    },
    "steps": [{"key": "twice", "type": "transform", "config": {"output": "{{ input.n * 2 }}"}}],
}


@pytest.fixture
def fake() -> Iterator[FakeLlm]:
    with run_fake_llm() as server:
        yield server


async def engine(start_engine: StartEngine, db_url: str, fake: FakeLlm) -> Running:
    return await start(start_engine, db_url, llm_base_url=fake.url, http_allowlist=[])


def agent(name: str, **config: Any) -> dict[str, Any]:
    step = {
        "model": "agent-model",
        "messages": [{"role": "user", "content": "{{ input.q }}"}],
        "tools": ["double"],
        **config,
    }
    return {"name": name, "steps": [{"key": "ask", "type": "llm", "config": step}]}


async def test_a_model_calling_a_tool_twice_gets_both_results_then_answers(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    fake.script(
        "agent-model",
        Answer(
            "", tool_calls=(Call("double", {"n": 2}), Call("double", {"n": 5})), prompt_tokens=7
        ),
        Answer("4 and 10", prompt_tokens=30),
    )
    running = await engine(start_engine, db_url, fake)
    await running.create_workflow(DOUBLE)
    await running.create_workflow(agent("agent"))
    body = await running.wait(await running.execute("agent", {"q": "Double 2 and 5"}))
    assert body["status"] == "completed", body
    output = body["output"]
    assert output["content"] == "4 and 10"
    assert output["turns"] == 2
    # usage summed over both turns: 7 + 0 completion tokens, then 30 + 3
    assert output["usage"] == {"promptTokens": 37, "completionTokens": 3, "totalTokens": 40}
    children = body["children"]
    assert len(children) == 2
    assert {c["parentExecutionId"] for c in children} == {body["id"]}
    assert {c["parentStepKey"] for c in children} == {"ask"}
    assert output["toolCalls"] == [
        {"name": "double", "executionId": children[0]["id"], "status": "completed"},
        {"name": "double", "executionId": children[1]["id"], "status": "completed"},
    ]
    outputs = []
    for child in children:
        detail = (await running.client.get(f"/api/executions/{child['id']}")).json()
        assert detail["parentExecutionId"] == body["id"]
        outputs.append((detail["input"], detail["output"]))
    assert outputs == [({"n": 2}, 4), ({"n": 5}, 10)]
    listed = (await running.client.get("/api/executions")).json()["executions"]
    parents = {e["id"]: e["parentExecutionId"] for e in listed}
    assert parents[children[0]["id"]] == parents[children[1]["id"]] == body["id"]

    first, second = fake.requests("agent-model")
    [tool] = first.body["tools"]
    assert tool == {
        "type": "function",
        "function": {
            "name": "double",
            "description": "Doubles a number",
            "parameters": DOUBLE["inputSchema"],
        },
    }
    assert first.body["messages"] == [{"role": "user", "content": "Double 2 and 5"}]
    assistant, result_a, result_b = second.body["messages"][1:]
    assert assistant["role"] == "assistant"
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_1_0", "call_1_1"]
    assert result_a == {"role": "tool", "tool_call_id": "call_1_0", "content": "4"}
    assert result_b == {"role": "tool", "tool_call_id": "call_1_1", "content": "10"}
    assert second.headers["idempotency-key"] == f"{body['id']}:ask:1"
    # every turn and tool call is on the step's row
    [row] = await sql(
        running, "SELECT progress FROM execution_steps WHERE execution_id = :id", id=body["id"]
    )
    progress = row["progress"] if isinstance(row["progress"], dict) else json.loads(row["progress"])
    assert len(progress["turns"]) == 1 and set(progress["calls"]) == {"0.0", "0.1"}


async def test_invalid_arguments_are_told_to_the_model_and_start_no_child(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    fake.script(
        "agent-model",
        Answer("", tool_calls=(Call("double", "{not json"), Call("double", {"n": "two"}))),
        Answer("", tool_calls=(Call("double", {"n": 3}),)),
        Answer("6"),
    )
    running = await engine(start_engine, db_url, fake)
    await running.create_workflow(DOUBLE)
    await running.create_workflow(agent("agent"))
    body = await running.wait(await running.execute("agent", {"q": "?"}))
    assert body["status"] == "completed", body
    [child] = body["children"]
    assert body["output"]["toolCalls"] == [
        {"name": "double", "executionId": None, "status": "invalid"},
        {"name": "double", "executionId": None, "status": "invalid"},
        {"name": "double", "executionId": child["id"], "status": "completed"},
    ]
    second = fake.requests("agent-model")[1]
    not_json, mismatch = (json.loads(m["content"])["error"] for m in second.body["messages"][2:])
    assert not_json.startswith("the arguments are not JSON")
    assert mismatch == (
        "the arguments do not match the tool's schema: at n: 'two' is not of type 'integer'"
    )
    third = fake.requests("agent-model")[2]
    assert third.body["messages"][-1]["content"] == "6"


async def test_a_failed_tool_execution_is_told_to_the_model(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    fake.script("agent-model", Answer("", tool_calls=(Call("broken", {}),)), Answer("sorry"))
    running = await engine(start_engine, db_url, fake)
    await running.create_workflow(
        {
            "name": "broken",
            "retryMaxAttempts": 1,
            "steps": [{"key": "boom", "type": "fail", "config": {"message": "out of stock"}}],
        }
    )
    await running.create_workflow(agent("agent", tools=["broken"]))
    body = await running.wait(await running.execute("agent", {"q": "?"}))
    assert body["status"] == "completed", body
    [call] = body["output"]["toolCalls"]
    assert call["status"] == "failed"
    told = json.loads(fake.requests("agent-model")[1].body["messages"][-1]["content"])
    assert "the tool's execution failed" in told["error"] and "out of stock" in told["error"]


async def test_max_turns_exceeded_fails_the_step_without_retry(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    fake.script("agent-model", Answer("", tool_calls=(Call("double", {"n": 1}),)))
    running = await engine(start_engine, db_url, fake)
    await running.create_workflow(DOUBLE)
    await running.create_workflow(agent("agent", maxTurns=3))
    body = await running.wait(await running.execute("agent", {"q": "?"}))
    assert body["status"] == "failed", body
    [step] = body["steps"]
    assert step["retryCount"] == 0
    assert "still called tools on its last turn (maxTurns 3)" in step["error"]
    assert len(fake.requests("agent-model")) == 3
    assert len(body["children"]) == 2  # the third turn's call is not run


async def test_an_unknown_tool_workflow_fails_the_step_at_once(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    fake.script("agent-model", Answer("hi"))
    running = await engine(start_engine, db_url, fake)
    await running.create_workflow(agent("agent", tools=["nowhere"]))
    body = await running.wait(await running.execute("agent", {"q": "?"}))
    assert body["status"] == "failed", body
    [step] = body["steps"]
    assert step["retryCount"] == 0 and "tools: no workflow 'nowhere'" in step["error"]
    assert fake.requests("agent-model") == []


async def test_an_input_schema_that_is_no_schema_is_refused_at_save(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    running = await engine(start_engine, db_url, fake)
    response = await running.client.post(
        "/api/workflows", json={**DOUBLE, "inputSchema": {"type": "number-ish"}}
    )
    assert response.status_code == 422, response.text
    assert "inputSchema" in response.text and "not a valid JSON Schema" in response.text
    assert (await running.client.get("/api/workflows/double")).status_code == 404


async def test_the_execution_page_links_every_tool_call_child(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    fake.script(
        "agent-model",
        Answer("", tool_calls=(Call("double", {"n": 1}), Call("double", {"n": 2}))),
        Answer("done"),
    )
    running = await engine(start_engine, db_url, fake)
    await running.create_workflow(DOUBLE)
    await running.create_workflow(agent("agent"))
    body = await running.wait(await running.execute("agent", {"q": "?"}))
    assert body["status"] == "completed", body
    html = await page(running, f"/executions/{body['id']}")
    tools = html.split('data-field="tools"')[1].split("</ol>")[0]
    links = [c["id"] for c in body["children"]]
    assert len(links) == 2
    for child_id in links:
        assert f'href="/executions/{child_id}"' in tools
    assert tools.index(links[0]) < tools.index(links[1])
    assert tools.count(">double</span>") == 2


async def test_a_retried_step_resumes_from_its_stored_turns_and_calls(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    fake.script(
        "agent-model",
        Answer("", tool_calls=(Call("double", {"n": 4}),)),
        Failure(503, "The server is overloaded", "server_error", headers={"Retry-After": "0"}),
        Answer("8"),
    )
    running = await engine(start_engine, db_url, fake)
    await running.create_workflow(DOUBLE)
    await running.create_workflow({**agent("agent"), "retryBackoffMs": 10})
    body = await running.wait(await running.execute("agent", {"q": "?"}))
    assert body["status"] == "completed", body
    assert body["steps"][0]["retryCount"] == 1
    assert body["output"]["content"] == "8" and body["output"]["turns"] == 2
    [child] = body["children"]  # the tool call of the first try was not run again
    first, failed, last = fake.requests("agent-model")
    assert len(first.body["messages"]) == 1
    assert failed.body["messages"] == last.body["messages"]
    assert last.body["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1_0",
        "content": "8",
    }
    logs = [entry["message"] for entry in body["logs"]]
    assert "Model turn 1 called 1 tool(s): double" in logs
    assert f"Tool call double ({child['id']}) completed" in logs


async def test_a_streamed_tool_loop_puts_the_calls_together_and_streams_the_answer(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    fake.script(
        "agent-model",
        Answer("", tool_calls=(Call("double", {"n": 21}), Call("double", {"n": 50}))),
        Answer("42 and 100, as asked"),
    )
    running = await engine(start_engine, db_url, fake)
    await running.create_workflow(DOUBLE)
    await running.create_workflow(agent("agent", stream=True))
    body = await running.wait(await running.execute("agent", {"q": "?"}))
    assert body["status"] == "completed", body
    assert body["output"]["content"] == "42 and 100, as asked"
    assert body["output"]["finishReason"] == "stop"
    outputs = []
    for child in body["children"]:
        outputs.append((await running.client.get(f"/api/executions/{child['id']}")).json())
    assert [(c["input"], c["output"]) for c in outputs] == [({"n": 21}, 42), ({"n": 50}, 100)]
    second = fake.requests("agent-model")[1]
    assert second.body["stream"] is True
    assert [m["content"] for m in second.body["messages"][2:]] == ["42", "100"]
    rows = await sql(
        running,
        "SELECT data FROM execution_events WHERE execution_id = :id AND type = 'step_delta'"
        " ORDER BY seq",
        id=body["id"],
    )
    data = [r["data"] if isinstance(r["data"], dict) else json.loads(r["data"]) for r in rows]
    assert "".join(d["delta"] for d in data) == "42 and 100, as asked"
