"""The `llm` step (DESIGN.md section 14) against a local OpenAI-compatible server of our own
(tests/support/fake_llm.py), on SQLite and PostgreSQL: output and usage as the server sent them,
responseSchema validation retried, 429 retried after Retry-After, 401 failing at once with the
server's message, API keys in nothing stored or shown, and a step's own baseUrl through the SSRF
guard while the operator's LLM_BASE_URL is trusted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Running, StartEngine
from tests.support.fake_llm import Answer, Failure, FakeLlm, run_fake_llm
from tests.support.flows import sql, start

pytestmark = pytest.mark.timeout(60)

OPERATOR_KEY = "sk-operator-Key-4242"
STEP_KEY = "sk-step-Secret-9876"


@pytest.fixture
def fake() -> Iterator[FakeLlm]:
    with run_fake_llm(api_key=OPERATOR_KEY) as server:
        yield server


async def engine(start_engine: StartEngine, db_url: str, fake: FakeLlm, **kw: Any) -> Running:
    """An engine whose LLM_BASE_URL is the fake server. HTTP_ALLOWLIST is empty unless a test
    says otherwise: the operator's server on 127.0.0.1 is reached all the same (trusted)."""
    values: dict[str, Any] = {
        "llm_base_url": fake.url,
        "llm_api_key": OPERATOR_KEY,
        "http_allowlist": [],
        **kw,
    }
    return await start(start_engine, db_url, **values)


def llm_workflow(name: str, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    step = {
        "model": "fake-model",
        "messages": [
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": "{{ input.q }}"},
        ],
        **config,
    }
    return {"name": name, "steps": [{"key": "ask", "type": "llm", "config": step}], **extra}


async def test_a_completion_gives_the_answer_and_usage_the_server_sent(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    fake.script(
        "fake-model",
        Answer("Paris is the capital.", finish_reason="length", prompt_tokens=21),
    )
    running = await engine(start_engine, db_url, fake)
    await running.create_workflow(llm_workflow("ask", {"temperature": 0.2, "maxTokens": 50}))
    body = await running.wait(await running.execute("ask", {"q": "Capital of France?"}))
    assert body["status"] == "completed", body
    assert body["output"] == {
        "content": "Paris is the capital.",
        "json": None,
        "model": "fake-model",
        "finishReason": "length",
        "usage": {"promptTokens": 21, "completionTokens": 4, "totalTokens": 25},
    }
    [request] = fake.requests("fake-model")
    assert request.body["messages"] == [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert request.body["temperature"] == 0.2 and request.body["max_tokens"] == 50
    assert "stream" not in request.body
    assert request.headers["authorization"] == f"Bearer {OPERATOR_KEY}"
    assert request.headers["idempotency-key"] == f"{body['id']}:ask"


async def test_an_answer_that_fails_its_schema_is_retried_until_valid(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    fake.script(
        "fake-model",
        Answer("Sure! Here it is."),
        Answer('{"city": "Paris", "population": "lots"}'),
        Answer('```json\n{"city": "Paris", "population": 2100000}\n```'),
    )
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    running = await engine(start_engine, db_url, fake)
    await running.create_workflow(
        llm_workflow(
            "structured", {"responseSchema": schema}, retryMaxAttempts=3, retryBackoffMs=10
        )
    )
    body = await running.wait(await running.execute("structured", {"q": "Paris?"}))
    assert body["status"] == "completed", body
    [step] = body["steps"]
    assert step["retryCount"] == 2
    assert body["output"]["json"] == {"city": "Paris", "population": 2100000}
    assert len(fake.requests("fake-model")) == 3
    messages = [entry["message"] for entry in body["logs"]]
    assert any("The answer is not JSON" in m for m in messages), messages
    assert any(
        "does not match responseSchema at population: 'lots' is not of type 'integer'" in m
        for m in messages
    ), messages


async def test_an_invalid_response_schema_fails_the_step_at_once(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    fake.script("fake-model", Answer("{}"))
    running = await engine(start_engine, db_url, fake)
    await running.create_workflow(
        llm_workflow("bad-schema", {"responseSchema": {"type": 12}}, retryMaxAttempts=3)
    )
    body = await running.wait(await running.execute("bad-schema", {"q": "?"}))
    assert body["status"] == "failed", body
    [step] = body["steps"]
    assert step["retryCount"] == 0
    assert "responseSchema" in step["error"] and "not a valid JSON Schema" in step["error"]
    assert fake.requests("fake-model") == []


async def test_429_is_retried_after_retry_after(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    fake.script(
        "fake-model",
        Failure(429, "Rate limit reached", "requests", "rate_limit_exceeded", {"Retry-After": "1"}),
        Answer("Finally."),
    )
    running = await engine(start_engine, db_url, fake)
    # The workflow's own backoff (10 ms) is far below what the server asked for.
    await running.create_workflow(llm_workflow("limited", {}, retryBackoffMs=10))
    body = await running.wait(await running.execute("limited", {"q": "?"}))
    assert body["status"] == "completed", body
    assert body["steps"][0]["retryCount"] == 1
    assert body["output"]["content"] == "Finally."
    first, second = fake.requests("fake-model")
    assert second.at - first.at >= 1.0
    retrying = [e["message"] for e in body["logs"] if "retrying in" in e["message"]]
    assert len(retrying) == 1 and "retrying in 1000 ms" in retrying[0], retrying
    assert "answered 429: Rate limit reached" in retrying[0]


async def test_401_fails_at_once_with_the_server_message_and_no_key_anywhere(
    db_url: str,
    start_engine: StartEngine,
    fake: FakeLlm,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORKFLOW_SECRET_LLM_KEY", STEP_KEY)
    running = await engine(start_engine, db_url, fake, http_allowlist=["127.0.0.1"])
    await running.create_workflow(
        llm_workflow(
            "wrong-key",
            {"baseUrl": fake.url, "apiKey": "{{ secrets.LLM_KEY }}"},
            retryMaxAttempts=3,
            retryBackoffMs=10,
        )
    )
    execution_id = await running.execute("wrong-key", {"q": "?"})
    body = await running.wait(execution_id)
    assert body["status"] == "failed", body
    [step] = body["steps"]
    assert step["retryCount"] == 0
    assert step["error"] == (
        f"LLM server {fake.url} answered 401: Incorrect API key provided: ***."
    )
    [request] = fake.requests("fake-model")  # not retried
    assert request.headers["authorization"] == f"Bearer {STEP_KEY}"  # the step's own key
    assert step["input"]["apiKey"] == "***"
    await assert_no_key(running, execution_id, STEP_KEY)


async def test_a_key_written_in_the_workflow_is_stored_masked(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    fake.script("fake-model", Answer("ok", token_delay_s=0.001))
    running = await engine(start_engine, db_url, fake)
    await running.create_workflow(
        llm_workflow("literal-key", {"apiKey": OPERATOR_KEY, "stream": True})
    )
    execution_id = await running.execute("literal-key", {"q": "?"})
    body = await running.wait(execution_id)
    assert body["status"] == "completed", body
    assert body["steps"][0]["input"]["apiKey"] == "***"
    await assert_no_key(running, execution_id, OPERATOR_KEY)


async def assert_no_key(running: Running, execution_id: str, key: str) -> None:
    """The key is in no execution, step, log or event row, nor in what the API shows."""
    shown = await running.client.get(f"/api/executions/{execution_id}")
    assert shown.status_code == 200
    assert key not in shown.text
    for table, column in (
        ("executions", "id"),
        ("execution_steps", "execution_id"),
        ("execution_logs", "execution_id"),
        ("execution_events", "execution_id"),
    ):
        rows = await sql(running, f"SELECT * FROM {table} WHERE {column} = :id", id=execution_id)
        assert rows, table
        assert key not in json.dumps(rows, default=str), table


@pytest.mark.parametrize("allowlisted", [False, True])
async def test_a_step_base_url_on_a_private_address_is_blocked_unless_allowed(
    db_url: str, start_engine: StartEngine, fake: FakeLlm, allowlisted: bool
) -> None:
    fake.script("fake-model", Answer("reached"))
    allowlist = ["127.0.0.1"] if allowlisted else []
    running = await engine(start_engine, db_url, fake, http_allowlist=allowlist)
    config = {"baseUrl": fake.url, "apiKey": OPERATOR_KEY}
    await running.create_workflow(llm_workflow("own-server", config, retryMaxAttempts=3))
    body = await running.wait(await running.execute("own-server", {"q": "?"}))
    if allowlisted:
        assert body["status"] == "completed", body
        assert body["output"]["content"] == "reached"
        assert len(fake.requests("fake-model")) == 1
        return
    assert body["status"] == "failed", body
    [step] = body["steps"]
    assert step["retryCount"] == 0  # blocked: not retried
    assert "Blocked destination" in step["error"] and "127.0.0.1" in step["error"], step
    assert fake.requests("fake-model") == []


async def test_a_step_base_url_never_gets_the_operator_key(
    db_url: str, start_engine: StartEngine
) -> None:
    with run_fake_llm() as other:  # a server of the workflow author's, asking for no key
        other.script("fake-model", Answer("hello"))
        running = await start(
            start_engine,
            db_url,
            llm_base_url="http://127.0.0.1:9/v1",
            llm_api_key=OPERATOR_KEY,
        )
        await running.create_workflow(llm_workflow("elsewhere", {"baseUrl": other.url}))
        body = await running.wait(await running.execute("elsewhere", {"q": "?"}))
        assert body["status"] == "completed", body["steps"][0]["error"]
        [request] = other.requests("fake-model")
        assert "authorization" not in request.headers
