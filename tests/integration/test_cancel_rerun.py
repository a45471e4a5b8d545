"""Cancel (running, pending, finished) and re-run from the failed step."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.conftest import Running, StartEngine
from tests.support.flows import counts, eventually, start
from tests.support.target import Target

pytestmark = pytest.mark.timeout(60)


def long_workflow(name: str, target: Target) -> dict[str, Any]:
    return {
        "name": name,
        "steps": [
            {"key": "before", "type": "http", "config": {"url": f"{target.url}/count/{name}-a"}},
            {"key": "wait", "type": "delay", "config": {"ms": 30_000}},
            {"key": "after", "type": "http", "config": {"url": f"{target.url}/count/{name}-c"}},
        ],
    }


async def step_running(running: Running, execution_id: str, key: str) -> dict[str, Any]:
    return await running.wait(
        execution_id,
        until=lambda e: any(s["stepKey"] == key and s["status"] == "running" for s in e["steps"]),
    )


async def test_cancel_running_execution_stops_it_at_once(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(long_workflow("long", target))
    execution_id = await running.execute("long")
    await step_running(running, execution_id, "wait")

    asked = time.monotonic()
    response = await running.client.post(f"/api/executions/{execution_id}/cancel")
    assert response.status_code == 202, response.text
    assert response.json()["executionId"] == execution_id
    body = await running.wait(execution_id, timeout=5)
    assert time.monotonic() - asked < 1.0
    assert body["status"] == "cancelled"
    assert body["error"] == "Cancelled"
    assert body["cancelRequestedAt"] is not None and body["completedAt"] is not None
    assert [(s["stepKey"], s["status"], s["error"]) for s in body["steps"]] == [
        ("before", "completed", None),
        ("wait", "failed", "Cancelled"),
    ]
    assert body["logs"][-1]["message"].startswith("Execution cancelled after")
    await asyncio.sleep(0.2)  # give a wrongly continuing executor the chance to show itself
    assert len(target.hits("count/long-a")) == 1
    assert target.hits("count/long-c") == []
    again = await running.client.get(f"/api/executions/{execution_id}")
    assert again.json()["status"] == "cancelled"
    assert len(again.json()["steps"]) == 2


async def test_cancel_pending_execution_never_starts(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    # One execution slot: the first execution holds it (its delay sleeps in the worker, not
    # durably), so the second stays pending.
    running = await start(
        start_engine, db_url, execution_concurrency=1, durable_delay_min_ms=60_000
    )
    await running.create_workflow(long_workflow("hog", target))
    await running.create_workflow(
        {
            "name": "queued",
            "steps": [{"key": "a", "type": "http", "config": {"url": f"{target.url}/count/q"}}],
        }
    )
    hog = await running.execute("hog")
    await step_running(running, hog, "wait")
    queued = await running.execute("queued")
    assert (await running.client.get(f"/api/executions/{queued}")).json()["status"] == "pending"

    response = await running.client.post(f"/api/executions/{queued}/cancel")
    assert response.status_code == 202, response.text
    assert response.json() == {"executionId": queued, "status": "cancelled"}

    # Free the slot; the cancelled one must still never run.
    await running.client.post(f"/api/executions/{hog}/cancel")
    await running.wait(hog, timeout=5)
    await asyncio.sleep(0.3)
    body = (await running.client.get(f"/api/executions/{queued}")).json()
    assert body["status"] == "cancelled"
    assert body["startedAt"] is None
    assert body["steps"] == []
    assert target.hits("count/q") == []


async def test_cancel_finished_execution_changes_nothing(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(
        {"name": "done", "steps": [{"key": "a", "type": "transform", "config": {"output": 1}}]}
    )
    execution_id = await running.execute("done")
    before = await running.wait(execution_id)
    assert before["status"] == "completed"

    response = await running.client.post(f"/api/executions/{execution_id}/cancel")
    assert response.status_code == 409, response.text
    assert "completed" in response.json()["detail"]
    after = (await running.client.get(f"/api/executions/{execution_id}")).json()
    assert after == before

    missing = await running.client.post("/api/executions/nope/cancel")
    assert missing.status_code == 404


async def test_cancel_twice_is_harmless(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(
        {"name": "nap", "steps": [{"key": "a", "type": "delay", "config": {"ms": 30_000}}]}
    )
    execution_id = await running.execute("nap")
    await step_running(running, execution_id, "a")
    first = await running.client.post(f"/api/executions/{execution_id}/cancel")
    assert first.status_code == 202
    body = await running.wait(execution_id, timeout=5)
    second = await running.client.post(f"/api/executions/{execution_id}/cancel")
    assert second.status_code == 202, second.text
    assert second.json() == {"executionId": execution_id, "status": "cancelled"}
    assert (await running.client.get(f"/api/executions/{execution_id}")).json() == body


async def test_rerun_starts_at_the_failed_step(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(
        {
            "name": "shaky",
            "retryMaxAttempts": 1,
            "steps": [
                {"key": "a", "type": "http", "config": {"url": f"{target.url}/count/ra"}},
                {
                    "key": "b",
                    "type": "transform",
                    "config": {"output": {"a": "{{ steps.a.output.body.hits }}"}},
                },
                {"key": "c", "type": "http", "config": {"url": f"{target.url}/flaky/rc?fail=1"}},
                {
                    "key": "d",
                    "type": "transform",
                    "config": {
                        "output": {
                            "a": "{{ steps.b.output.a }}",
                            "c": "{{ steps.c.output.body.hits }}",
                            "in": "{{ input.x }}",
                        }
                    },
                },
            ],
        }
    )
    failed_id = await running.execute("shaky", {"x": "y"})
    failed = await running.wait(failed_id)
    assert failed["status"] == "failed"
    assert [(s["stepKey"], s["status"]) for s in failed["steps"]] == [
        ("a", "completed"),
        ("b", "completed"),
        ("c", "failed"),
    ]

    response = await running.client.post(f"/api/executions/{failed_id}/rerun")
    assert response.status_code == 202, response.text
    rerun_id = response.json()["executionId"]
    assert rerun_id != failed_id
    rerun = await running.wait(rerun_id)

    assert rerun["status"] == "completed", rerun
    assert rerun["rerunOfId"] == failed_id
    assert rerun["workflowVersionId"] == failed["workflowVersionId"]
    assert rerun["input"] == {"x": "y"}
    assert rerun["output"] == {"a": 1, "c": 2, "in": "y"}
    # a and b were carried over, not run again; c was tried again, d ran for the first time.
    assert len(target.hits("count/ra")) == 1
    assert [h.idempotency_key for h in target.hits("flaky/rc")] == [
        f"{failed_id}:c",
        f"{rerun_id}:c",
    ]
    assert [(s["stepKey"], s["status"]) for s in rerun["steps"]] == [
        (key, "completed") for key in "abcd"
    ]
    assert rerun["steps"][0]["output"] == failed["steps"][0]["output"]
    started_logs = [e["message"] for e in rerun["logs"] if " started" in e["message"]]
    assert [m for m in started_logs if m.startswith("Step")] == [
        "Step 'c' started",
        "Step 'd' started",
    ]
    # The source execution is untouched; its history says who re-ran it, and as what.
    source = (await running.client.get(f"/api/executions/{failed_id}")).json()
    assert [a["summary"] for a in source.pop("audit")] == [f"re-run as {rerun_id} by API_TOKEN"]
    assert source == {k: v for k, v in failed.items() if k != "audit"}

    before = await counts(running)
    again = await running.client.post(f"/api/executions/{rerun_id}/rerun")
    assert again.status_code == 409, again.text
    assert "completed" in again.json()["detail"]
    assert await counts(running) == before
    assert (await running.client.post("/api/executions/nope/rerun")).status_code == 404


async def test_rerun_of_cancelled_execution(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url)
    document = long_workflow("paused", target)
    document["steps"][1]["config"]["ms"] = 30_000
    await running.create_workflow(document)
    execution_id = await running.execute("paused")
    await step_running(running, execution_id, "wait")
    await running.client.post(f"/api/executions/{execution_id}/cancel")
    assert (await running.wait(execution_id))["status"] == "cancelled"

    response = await running.client.post(f"/api/executions/{execution_id}/rerun")
    assert response.status_code == 202, response.text
    rerun_id = response.json()["executionId"]
    body = await running.wait(rerun_id, until=lambda e: len(e["steps"]) >= 2)
    assert body["rerunOfId"] == execution_id
    assert body["steps"][0]["stepKey"] == "before" and body["steps"][0]["status"] == "completed"
    assert len(target.hits("count/paused-a")) == 1
    await running.client.post(f"/api/executions/{rerun_id}/cancel")
    await eventually(
        lambda: _status_is(running, rerun_id, "cancelled"),
        timeout=5,
    )


async def _status_is(running: Running, execution_id: str, status: str) -> bool:
    response = await running.client.get(f"/api/executions/{execution_id}")
    return bool(response.json()["status"] == status)
