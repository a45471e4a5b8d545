"""A multi-step execution end to end: what GET shows, the step rows, and the log rows in order."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from tests.conftest import StartEngine
from tests.support.flows import parse_time, sql, start
from tests.support.target import Target

pytestmark = pytest.mark.timeout(60)


async def test_three_steps_complete_with_rows_and_ordered_logs(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url)
    workflow = await running.create_workflow(
        {
            "name": "enrich",
            "steps": [
                {
                    "key": "greet",
                    "name": "Greet",
                    "type": "transform",
                    "config": {
                        "output": {"message": "Hello {{ input.name }}", "n": "{{ input.n }}"}
                    },
                },
                {
                    "key": "call",
                    "type": "http",
                    "config": {
                        "method": "POST",
                        "url": f"{target.url}/echo",
                        "json": {"m": "{{ steps.greet.output.message }}"},
                    },
                },
                {
                    "key": "combine",
                    "type": "transform",
                    "config": {
                        "output": {
                            "greeting": "{{ steps.greet.output.message }}",
                            "n": "{{ steps.greet.output.n }}",
                            "echoed": "{{ steps.call.output.body.json.m }}",
                            "status": "{{ steps.call.output.status }}",
                        }
                    },
                },
            ],
        }
    )
    execution_id = await running.execute("enrich", {"name": "Ada", "n": 3})
    body = await running.wait(execution_id)

    assert body["status"] == "completed", body
    assert body["error"] is None
    assert body["output"] == {"greeting": "Hello Ada", "n": 3, "echoed": "Hello Ada", "status": 200}
    assert body["workflowId"] == workflow["id"]
    assert body["workflowVersionId"] == workflow["activeVersionId"]
    assert isinstance(body["durationMs"], int) and body["durationMs"] >= 0
    assert body["retryCount"] == 0
    started, completed = parse_time(body["startedAt"]), parse_time(body["completedAt"])
    assert started <= completed

    # The echo route saw exactly one request, carrying the step's idempotency key.
    hits = target.hits("echo")
    assert [h.idempotency_key for h in hits] == [f"{execution_id}:call"]

    step_ids = {
        row["key"]: row["id"]
        for row in await sql(
            running,
            "SELECT id, key FROM workflow_steps WHERE workflow_version_id = :v",
            v=workflow["activeVersionId"],
        )
    }
    steps = body["steps"]
    assert [s["stepKey"] for s in steps] == ["greet", "call", "combine"]
    for step in steps:
        assert step["status"] == "completed", step
        assert step["stepId"] == step_ids[step["stepKey"]]
        assert step["error"] is None
        assert step["retryCount"] == 0
        assert isinstance(step["durationMs"], int) and step["durationMs"] >= 0
        step_start, step_end = parse_time(step["startedAt"]), parse_time(step["completedAt"])
        assert started <= step_start <= step_end <= completed
    # Each step starts after the previous one completed (a checkpoint between steps).
    for before, after in itertools.pairwise(steps):
        assert parse_time(before["completedAt"]) <= parse_time(after["startedAt"])
    # Inputs are the rendered configs; outputs what each step produced.
    assert steps[0]["input"] == {"output": {"message": "Hello Ada", "n": 3}}
    assert steps[0]["output"] == {"message": "Hello Ada", "n": 3}
    assert steps[1]["input"]["json"] == {"m": "Hello Ada"}
    assert steps[1]["input"]["url"] == f"{target.url}/echo"
    assert steps[1]["output"]["status"] == 200
    assert steps[1]["output"]["body"]["json"] == {"m": "Hello Ada"}
    assert steps[2]["output"] == body["output"]

    # The seed's query, as written, returns the log lines in the order they happened.
    rows = await sql(
        running,
        f"SELECT * FROM execution_logs WHERE execution_id = '{execution_id}' ORDER BY timestamp;",
    )
    messages = [row["message"] for row in rows]
    assert messages[0].startswith("Execution started"), messages
    assert messages[-1].startswith("Execution completed in"), messages
    expected_order = [
        "Step 'Greet' started",
        "Step 'Greet' completed",
        "Step 'call' started",
        "Step 'call' completed",
        "Step 'combine' started",
        "Step 'combine' completed",
    ]
    positions = [
        next(i for i, m in enumerate(messages) if m.startswith(prefix)) for prefix in expected_order
    ]
    assert positions == sorted(positions), messages
    assert {row["level"] for row in rows} == {"info"}
    assert all(row["execution_id"] == execution_id for row in rows)
    # The API shows the same lines in the same order.
    assert [entry["message"] for entry in body["logs"]] == messages
    stamps = [parse_time(entry["timestamp"]) for entry in body["logs"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


async def test_a_step_output_is_stored_before_the_next_step_starts(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    """A transform's start is committed with its end (it has no effect outside the engine: lost
    in a crash, it only runs again), but its output is still stored before the next step starts:
    while the http step after it runs, the database shows the transform completed, the http step
    running, and the execution's start."""
    running = await start(start_engine, db_url)
    await running.create_workflow(
        {
            "name": "stored-first",
            "steps": [
                {"key": "shape", "type": "transform", "config": {"output": {"v": 7}}},
                {"key": "call", "type": "http", "config": {"url": f"{target.url}/hold/s"}},
            ],
        }
    )
    execution_id = await running.execute("stored-first")
    for _ in range(500):
        if target.hits("hold/s"):
            break
        await asyncio.sleep(0.02)
    assert target.hits("hold/s"), "the http step never called"
    rows = await sql(
        running,
        "SELECT step_key, status, output FROM execution_steps WHERE execution_id = :id",
        id=execution_id,
    )
    by_key = {row["step_key"]: row for row in rows}
    assert by_key["shape"]["status"] == "completed"
    output = by_key["shape"]["output"]  # JSON text on SQLite, decoded on PostgreSQL
    assert (json.loads(output) if isinstance(output, str) else output) == {"v": 7}
    assert by_key["call"]["status"] == "running"
    events = await sql(
        running,
        "SELECT type FROM execution_events WHERE execution_id = :id ORDER BY seq",
        id=execution_id,
    )
    assert [e["type"] for e in events] == [
        "started",
        "step_started",
        "step_completed",
        "step_started",
    ]
    target.release("s")
    done = await running.wait(execution_id)
    assert done["status"] == "completed"
    assert [s["status"] for s in done["steps"]] == ["completed", "completed"]
