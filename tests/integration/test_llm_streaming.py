"""A streamed llm step (`"stream": true`): `step_delta` events reach Socket.io subscribers while the
model answers, in `seq` order, replay from any `afterSeq`, add up to the final text, and are
stored compacted (engine/deltas.py), far fewer rows than tokens. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartEngine
from tests.support.fake_llm import Answer, FakeLlm, run_fake_llm, tokens
from tests.support.flows import sql, start
from tests.support.realtime import LiveServer, Recorder, live_server, socket_client

pytestmark = pytest.mark.timeout(90)

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
    with run_fake_llm() as server:
        yield server


def words(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))


def deltas(recorder: Recorder, execution_id: str) -> list[dict[str, Any]]:
    return [p for name, p in recorder.of(execution_id) if name == "step_delta"]


async def _execute(server: LiveServer) -> str:
    assert (await server.client.post("/api/workflows", json=WORKFLOW)).status_code == 201
    response = await server.client.post(
        "/api/workflows/streamed/execute", json={"input": {"q": "Tell me"}}
    )
    assert response.status_code == 202, response.text
    execution_id: str = response.json()["executionId"]
    return execution_id


async def test_subscribers_see_the_text_grow_and_late_ones_replay_it(
    db_url: str, tmp_path: Path, fake: FakeLlm
) -> None:
    content = words(60)
    fake.script("fake-model", Answer(content, token_delay_s=0.03))
    async with (
        live_server(db_url, tmp_path, llm_base_url=fake.url) as server,
        socket_client(server.url, auth={"token": server.token}) as early,
        socket_client(server.url, auth={"token": server.token}) as midway,
        socket_client(server.url, auth={"token": server.token}) as late,
    ):
        execution_id = await _execute(server)
        assert (await early.call("subscribe", execution_id))["ok"]
        await early.wait_for(lambda r: bool(deltas(r, execution_id)))
        # The first delta arrives while the model is still answering.
        now = (await server.client.get(f"/api/executions/{execution_id}")).json()
        assert now["status"] == "running" and now["steps"][0]["status"] == "running", now
        first = deltas(early, execution_id)[0]
        assert first["stepKey"] == "ask" and first["attempt"] == 1
        assert content.startswith(first["delta"])

        # One subscribing half-way gets what it missed after its afterSeq, then the rest.
        ack = await midway.call(
            "subscribe", {"executionId": execution_id, "afterSeq": first["seq"]}
        )
        assert ack["ok"], ack
        await early.wait_final(execution_id)
        await midway.wait_final(execution_id)
        body = (await server.client.get(f"/api/executions/{execution_id}")).json()
        assert body["status"] == "completed", body
        assert body["output"]["content"] == content
        assert body["output"]["usage"]["completionTokens"] == len(tokens(content))

        seen = deltas(early, execution_id)
        assert len(seen) >= 2  # it grew in several pieces
        assert "".join(p["delta"] for p in seen) == content
        names = [name for name, _ in early.of(execution_id) if name != "log"]
        assert names.index("step_completed") > max(
            i for i, name in enumerate(names) if name == "step_delta"
        )
        seqs = [p["seq"] for _, p in early.of(execution_id)]
        assert seqs == list(range(1, len(seqs) + 1))

        rest = deltas(midway, execution_id)
        assert [p["seq"] for p in rest] == [p["seq"] for p in seen[1:]]
        assert first["delta"] + "".join(p["delta"] for p in rest) == content
        assert min(p["seq"] for _, p in midway.of(execution_id)) == first["seq"] + 1

        # After the end, afterSeq=0 replays every delta from the database.
        assert (await late.call("subscribe", {"executionId": execution_id, "afterSeq": 0}))["ok"]
        await late.wait_final(execution_id)
        assert deltas(late, execution_id) == seen


async def test_deltas_are_stored_compacted(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    content = words(400)
    fake.script("fake-model", Answer(content, token_delay_s=0.002))
    running = await start(start_engine, db_url, llm_base_url=fake.url)
    await running.create_workflow(WORKFLOW)
    execution_id = await running.execute("streamed", {"q": "Tell me"})
    body = await running.wait(execution_id)
    assert body["status"] == "completed", body
    assert body["output"]["content"] == content
    [request] = fake.requests("fake-model")
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    rows = await sql(
        running,
        "SELECT seq, data FROM execution_events WHERE execution_id = :id AND type = 'step_delta'"
        " ORDER BY seq",
        id=execution_id,
    )
    # 400 tokens over about a second: a row per 100 ms, not one per token.
    assert 1 <= len(rows) <= len(tokens(content)) // 10, len(rows)
    stored = [json.loads(r["data"]) if isinstance(r["data"], str) else r["data"] for r in rows]
    assert "".join(data["delta"] for data in stored) == content


async def test_a_stream_cut_short_is_retried_and_its_attempt_starts_over(
    db_url: str, start_engine: StartEngine, fake: FakeLlm
) -> None:
    content = words(30)
    fake.script(
        "fake-model",
        Answer(content, token_delay_s=0.03, cut_after=12),
        Answer(content, token_delay_s=0.005),
    )
    running = await start(start_engine, db_url, llm_base_url=fake.url)
    await running.create_workflow({**WORKFLOW, "retryBackoffMs": 10})
    execution_id = await running.execute("streamed", {"q": "Tell me"})
    body = await running.wait(execution_id)
    assert body["status"] == "completed", body
    assert body["steps"][0]["retryCount"] == 1
    [retry] = [e["message"] for e in body["logs"] if "retrying in" in e["message"]]
    assert "peer closed connection" in retry, retry
    assert body["output"]["content"] == content
    rows = await sql(
        running,
        "SELECT data FROM execution_events WHERE execution_id = :id AND type = 'step_delta'"
        " ORDER BY seq",
        id=execution_id,
    )
    stored = [json.loads(r["data"]) if isinstance(r["data"], str) else r["data"] for r in rows]
    first = "".join(d["delta"] for d in stored if d["attempt"] == 1)
    second = "".join(d["delta"] for d in stored if d["attempt"] == 2)
    assert first and content.startswith(first) and len(first) < len(content)
    assert second == content
    assert [d["attempt"] for d in stored] == sorted(d["attempt"] for d in stored)
