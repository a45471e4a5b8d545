"""Failure alerts (`onFailure`): a failed execution starts the named workflow once, with the
failure as its input; completed and cancelled ones do not; bad references are refused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from tests.conftest import Running, StartEngine
from tests.support.flows import eventually, sql, start
from workflow_engine.storage.executions import NewExecution, execution_row
from workflow_engine.storage.tables import executions

pytestmark = pytest.mark.timeout(60)

SINK = {
    "name": "alert-sink",
    "steps": [{"key": "got", "type": "transform", "config": {"output": "{{ input }}"}}],
}


def flaky(on_failure: str | None = "alert-sink", **extra: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "flaky",
        "retryMaxAttempts": 1,
        "steps": [
            {"key": "prepare", "type": "transform", "config": {"output": 1}},
            {"key": "boom", "type": "fail", "config": {"message": "{{ input.why }}"}},
        ],
        **extra,
    }
    if on_failure is not None:
        document["onFailure"] = on_failure
    return document


async def alerts_of(running: Running, workflow_id: str) -> list[dict[str, Any]]:
    response = await running.client.get("/api/executions", params={"workflowId": workflow_id})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["executions"]
    return found


async def test_a_failed_execution_starts_its_on_failure_workflow_once_with_the_failure(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    sink = await running.create_workflow(SINK)
    created = await running.create_workflow(flaky())
    assert created["definition"]["onFailure"] == "alert-sink"

    execution_id = await running.execute("flaky", {"why": "card declined"})
    failed = await running.wait(execution_id)
    assert failed["status"] == "failed"
    boom = next(s for s in failed["steps"] if s["stepKey"] == "boom")

    [alert] = await eventually(lambda: alerts_of(running, sink["id"]))
    done = await running.wait(alert["id"])
    expected = {
        "executionId": execution_id,
        "workflowId": created["id"],
        "workflowName": "flaky",
        "error": failed["error"],
        "failedStep": {"stepId": boom["stepId"], "stepKey": "boom", "error": "card declined"},
    }
    assert done["status"] == "completed"
    assert done["input"] == expected
    assert done["output"] == expected
    assert failed["error"] == "Step 'boom' failed: card declined"
    messages = [line["message"] for line in failed["logs"]]
    assert f"Failure alert: started workflow 'alert-sink' (execution {alert['id']})" in messages
    rows = await sql(
        running, "SELECT idempotency_key FROM executions WHERE id = :id", id=alert["id"]
    )
    assert rows == [{"idempotency_key": f"onFailure:{execution_id}"}]

    # Once: nothing else comes, even when the failed execution's job is delivered again.
    await running.engine.execution_queue.add(execution_id)
    await running.engine.dispatch_queue.add(execution_id)
    await asyncio.sleep(0.5)
    assert len(await alerts_of(running, sink["id"])) == 1


async def test_completed_and_cancelled_executions_start_no_alert(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    sink = await running.create_workflow(SINK)
    await running.create_workflow(
        {
            "name": "fine",
            "onFailure": sink["id"],  # by id, as a `workflow` step may name it
            "steps": [{"key": "ok", "type": "transform", "config": {"output": 1}}],
        }
    )
    await running.create_workflow(
        {
            "name": "slow",
            "onFailure": "alert-sink",
            "steps": [{"key": "wait", "type": "delay", "config": {"ms": 30_000}}],
        }
    )
    completed = await running.wait(await running.execute("fine"))
    assert completed["status"] == "completed"
    slow_id = await running.execute("slow")
    await running.wait(slow_id, until=lambda e: e["status"] in ("running", "waiting"))
    response = await running.client.post(f"/api/executions/{slow_id}/cancel")
    assert response.status_code == 202, response.text
    assert (await running.wait(slow_id))["status"] == "cancelled"
    await asyncio.sleep(0.5)
    assert await alerts_of(running, sink["id"]) == []


async def test_an_execution_that_times_out_alerts_without_a_failed_step(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    sink = await running.create_workflow(SINK)
    await running.create_workflow(
        {
            "name": "too-slow",
            "timeoutMs": 100,
            "onFailure": "alert-sink",
            "steps": [{"key": "wait", "type": "delay", "config": {"ms": 2_000}}],
        }
    )
    execution_id = await running.execute("too-slow")
    assert (await running.wait(execution_id))["status"] == "failed"
    [alert] = await eventually(lambda: alerts_of(running, sink["id"]))
    done = await running.wait(alert["id"])
    assert done["input"]["failedStep"] is None
    assert done["input"]["error"] == "Execution timed out after 100 ms"


async def test_an_alert_that_fails_does_not_alert_again(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    # A failing alert workflow that names itself, and a workflow alerting it.
    loop = await running.create_workflow(
        {
            "name": "alert-loop",
            "onFailure": "alert-loop",
            "retryMaxAttempts": 1,
            "steps": [{"key": "no", "type": "fail", "config": {"message": "alert broke"}}],
        }
    )
    await running.create_workflow(flaky("alert-loop"))
    execution_id = await running.execute("flaky", {"why": "first"})
    assert (await running.wait(execution_id))["status"] == "failed"
    [alert] = await eventually(lambda: alerts_of(running, loop["id"]))
    failed_alert = await running.wait(alert["id"])
    assert failed_alert["status"] == "failed"
    assert failed_alert["input"]["executionId"] == execution_id
    assert any(
        line["message"].startswith("Failure alert not started: this execution runs for a failure")
        for line in failed_alert["logs"]
    )
    await asyncio.sleep(0.5)
    assert len(await alerts_of(running, loop["id"])) == 1


async def test_an_unknown_on_failure_workflow_is_refused_with_422(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    response = await running.client.post("/api/workflows", json=flaky("no-such-workflow"))
    assert response.status_code == 422, response.text
    assert "onFailure" in response.json()["detail"]
    assert "no-such-workflow" in response.json()["detail"]

    await running.create_workflow(flaky(None))
    response = await running.client.put("/api/workflows/flaky", json=flaky("nope"))
    assert response.status_code == 422, response.text
    assert "onFailure" in response.json()["detail"]

    sink = await running.create_workflow(SINK)
    assert (await running.client.delete(f"/api/workflows/{sink['id']}")).status_code < 300
    response = await running.client.put("/api/workflows/flaky", json=flaky(sink["id"]))
    assert response.status_code == 422, response.text
    assert "archived" in response.json()["detail"]

    response = await running.client.put("/api/workflows/flaky", json=flaky("flaky"))
    assert response.status_code == 200, response.text  # naming itself is allowed

    response = await running.client.post(
        "/api/workflows", json={**flaky(None), "name": "other", "onFailure": ""}
    )
    assert response.status_code == 422, response.text


async def test_an_on_failure_workflow_archived_later_is_a_log_line_on_the_failure(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    sink = await running.create_workflow(SINK)
    await running.create_workflow(flaky())
    assert (await running.client.delete(f"/api/workflows/{sink['id']}")).status_code < 300

    execution_id = await running.execute("flaky", {"why": "no sink"})
    failed = await running.wait(execution_id)
    assert failed["status"] == "failed"
    [line] = [
        line for line in failed["logs"] if line["message"].startswith("Failure alert not started")
    ]
    assert line["level"] == "error"
    assert line["message"] == (
        "Failure alert not started: the onFailure workflow 'alert-sink' is not found"
    )
    assert await alerts_of(running, sink["id"]) == []


async def test_an_execution_failed_for_crashing_every_delivery_alerts_too(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url, max_deliveries=1)
    sink = await running.create_workflow(SINK)
    created = await running.create_workflow(flaky())
    # An execution whose worker died once already (token 1, lease expired): the next claim
    # is one delivery too many.
    row = execution_row(
        NewExecution(
            workflow_id=created["id"],
            workflow_version_id=created["activeVersionId"],
            input={"why": "never runs"},
        )
    )
    past = datetime.now(UTC) - timedelta(minutes=5)
    row.update(status="running", fencing_token=1, lease_expires_at=past, started_at=past)
    async with running.engine.db.write() as conn:
        await conn.execute(insert(executions), [row])
    await running.engine.reconciler.run_once()

    failed = await running.wait(row["id"])
    assert failed["status"] == "failed"
    assert "giving up after 1 deliveries" in failed["error"]
    [alert] = await eventually(lambda: alerts_of(running, sink["id"]))
    done = await running.wait(alert["id"])
    assert done["input"]["executionId"] == row["id"]
    assert done["input"]["error"] == failed["error"]
    assert done["input"]["failedStep"] is None
