"""Token accounting and budgets of llm steps (DESIGN.md section 14), on SQLite and PostgreSQL,
against the local OpenAI-compatible server: usage summed per execution and per workflow (tries
that failed afterwards included) in the API and the UI; LLM_LIMITS making executions wait, none
failing and no window of the stored usage over the cap; a token budget failing the execution
once, not retried."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import Running, StartEngine
from tests.support.fake_llm import Answer, FakeLlm, run_fake_llm
from tests.support.flows import sql, start
from tests.support.pages import page

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def fake() -> Iterator[FakeLlm]:
    with run_fake_llm() as server:
        yield server


async def engine(start_engine: StartEngine, db_url: str, fake: FakeLlm, **kw: Any) -> Running:
    return await start(start_engine, db_url, llm_base_url=fake.url, **kw)


def ask(key: str, model: str, **config: Any) -> dict[str, Any]:
    return {
        "key": key,
        "type": "llm",
        "config": {
            "model": model,
            "messages": [{"role": "user", "content": "{{ input.q }}"}],
            **config,
        },
    }


async def test_usage_is_summed_per_execution_and_per_workflow_retries_included(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    fake.script(
        "model-a",
        Answer("not JSON", prompt_tokens=10, completion_tokens=5),
        Answer('{"x": 1}', prompt_tokens=10, completion_tokens=7),
        Answer("not JSON", prompt_tokens=10, completion_tokens=5),
        Answer('{"x": 1}', prompt_tokens=10, completion_tokens=7),
    )
    fake.script("model-b", Answer("done", prompt_tokens=20, completion_tokens=3))
    running = await engine(start_engine, db_url, fake)
    schema = {"type": "object", "required": ["x"]}
    workflow = {
        "name": "two-asks",
        "retryBackoffMs": 10,
        "steps": [ask("a", "model-a", responseSchema=schema), ask("b", "model-b")],
    }
    await running.create_workflow(workflow)
    bodies = []
    for _ in range(2):
        body = await running.wait(await running.execute("two-asks", {"q": "?"}))
        assert body["status"] == "completed", body
        assert body["steps"][0]["retryCount"] == 1  # its first answer failed its schema
        bodies.append(body)
    # a: 15 (the try that failed: spent all the same) + 17; b: 23.
    expected = {"promptTokens": 40, "completionTokens": 15, "totalTokens": 55, "requests": 3}
    for body in bodies:
        assert body["usage"] == expected
        assert body["steps"][1]["output"]["usage"]["totalTokens"] == 23

    shown = await running.client.get("/api/workflows/two-asks/usage")
    assert shown.status_code == 200, shown.text
    workflow_id = shown.json()["workflowId"]
    assert shown.json() == {
        "workflowId": workflow_id,
        "promptTokens": 80,
        "completionTokens": 30,
        "totalTokens": 110,
        "requests": 6,
    }
    assert (await running.client.get("/api/workflows/nope/usage")).status_code == 404

    html = await page(running, f"/executions/{bodies[0]['id']}")
    assert 'id="fact-tokens"' in html and "40 in, 15 out, 3 requests" in html
    html = await page(running, f"/workflows/{workflow_id}")
    assert '<dd id="usage-total" class="big">110</dd>' in html


async def test_an_execution_without_llm_steps_reports_no_usage(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    running = await engine(start_engine, db_url, fake)
    await running.create_workflow(
        {"name": "plain", "steps": [{"key": "t", "type": "transform", "config": {"output": 1}}]}
    )
    body = await running.wait(await running.execute("plain", {}))
    assert body["status"] == "completed", body
    assert body["usage"] == {
        "promptTokens": 0,
        "completionTokens": 0,
        "totalTokens": 0,
        "requests": 0,
    }
    assert 'id="fact-tokens"' not in await page(running, f"/executions/{body['id']}")


WINDOW_MS = 3000
CAP = 1000


async def test_executions_over_llm_limits_wait_and_no_window_exceeds_the_cap(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    # 100 tokens an answer; each request reserves about 12 (prompt) + 90 (maxTokens) first.
    fake.script("capped", Answer("fine", prompt_tokens=60, completion_tokens=40))
    running = await engine(
        start_engine,
        db_url,
        fake,
        llm_limits={"capped": {"tokensPerMinute": CAP}},
        llm_limit_window_ms=WINDOW_MS,
        execution_concurrency=10,
    )
    # The step's timeout is shorter than the waits: waiting for room does not count in it.
    step = ask("ask", "capped", maxTokens=90)
    await running.create_workflow(
        {"name": "capped", "steps": [{**step, "timeoutMs": 1000}], "retryMaxAttempts": 1}
    )
    ids = [await running.execute("capped", {"q": f"Question {n}"}) for n in range(20)]
    bodies = await asyncio.gather(*(running.wait(i, timeout=60) for i in ids))
    assert [b["status"] for b in bodies] == ["completed"] * 20, [
        (b["error"], b["steps"]) for b in bodies if b["status"] != "completed"
    ]
    assert all(b["steps"][0]["retryCount"] == 0 for b in bodies)
    assert len(fake.requests("capped")) == 20
    waited = [b for b in bodies if any("Waiting for room" in e["message"] for e in b["logs"])]
    assert waited, "2,000 tokens do not fit in one window: some must have waited"

    rows = await sql(
        running,
        "SELECT total_tokens, created_at FROM llm_usage WHERE model = 'capped' ORDER BY created_at",
    )
    assert len(rows) == 20 and sum(r["total_tokens"] for r in rows) == 2000
    assert_no_window_over(rows, CAP, WINDOW_MS)


def assert_no_window_over(rows: list[dict[str, Any]], cap: int, window_ms: int) -> None:
    """No window of `window_ms` (starting at any answer) holds more than `cap` tokens."""
    stamps = [(to_datetime(r["created_at"]), r["total_tokens"]) for r in rows]
    window = timedelta(milliseconds=window_ms)
    for start_at, _ in stamps:
        inside = sum(t for at, t in stamps if start_at <= at < start_at + window)
        assert inside <= cap, (start_at, inside)


def to_datetime(value: Any) -> Any:
    if isinstance(value, str):  # SQLite through raw SQL
        from datetime import datetime

        return datetime.fromisoformat(value)
    return value.replace(tzinfo=None)


async def test_a_token_budget_exceeded_fails_the_execution_once_not_retried(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    fake.script("model-a", Answer("first", prompt_tokens=60, completion_tokens=40))
    fake.script("model-b", Answer("second", prompt_tokens=60, completion_tokens=40))
    fake.script("model-c", Answer("third"))
    running = await engine(start_engine, db_url, fake)
    await running.create_workflow(
        {
            "name": "budgeted",
            "tokenBudget": 150,
            "retryMaxAttempts": 3,
            "retryBackoffMs": 10,
            "steps": [ask("a", "model-a"), ask("b", "model-b"), ask("c", "model-c")],
        }
    )
    body = await running.wait(await running.execute("budgeted", {"q": "?"}))
    assert body["status"] == "failed", body
    a, b = body["steps"][:2]
    assert a["status"] == "completed"
    assert b["status"] == "failed" and b["retryCount"] == 0
    assert b["error"] == (
        "Token budget exceeded: the execution has used 200 tokens, its workflow's "
        "tokenBudget is 150"
    )
    assert "Token budget exceeded" in body["error"]
    assert [s["stepKey"] for s in body["steps"]] == ["a", "b"]  # c never started
    assert len(fake.requests("model-b")) == 1  # not retried
    assert fake.requests("model-c") == []
    assert body["usage"]["totalTokens"] == 200 and body["usage"]["requests"] == 2


async def test_a_bad_token_budget_is_refused(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    running = await engine(start_engine, db_url, fake)
    response = await running.client.post(
        "/api/workflows",
        json={"name": "bad", "tokenBudget": 0, "steps": [ask("a", "model-a")]},
    )
    assert response.status_code == 422, response.text
    assert "tokenBudget" in response.text
