"""Workflow CRUD and versions, idempotent execute, triggers via the API, and the cron scheduler."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Running, StartEngine
from tests.support.flows import counts, scalar, start

pytestmark = pytest.mark.timeout(60)


def document(name: str, message: str = "v1", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "steps": [
            {"key": "pause", "type": "delay", "config": {"ms": 300}},
            {"key": "say", "type": "transform", "config": {"output": {"message": message}}},
        ],
        **extra,
    }


async def test_idempotency_key_returns_the_same_execution(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(document("idem"))
    headers = {"Idempotency-Key": "order-42"}
    first = await running.client.post(
        "/api/workflows/idem/execute", json={"input": {"a": 1}}, headers=headers
    )
    second = await running.client.post(
        "/api/workflows/idem/execute", json={"input": {"a": 1}}, headers=headers
    )
    assert first.status_code == 202 and second.status_code == 202, second.text
    assert first.json()["executionId"] == second.json()["executionId"]
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    assert await scalar(running, "SELECT count(*) FROM executions") == 1
    # A different key is a different execution.
    other = await running.execute("idem", headers={"Idempotency-Key": "order-43"})
    assert other != first.json()["executionId"]
    assert await scalar(running, "SELECT count(*) FROM executions") == 2
    await running.wait(first.json()["executionId"])
    await running.wait(other)


async def test_concurrent_same_idempotency_key_stores_one_row(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(document("race"))
    responses = await asyncio.gather(
        *(
            running.client.post(
                "/api/workflows/race/execute", json={}, headers={"Idempotency-Key": "same"}
            )
            for _ in range(10)
        )
    )
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["executionId"] for r in responses}) == 1
    assert await scalar(running, "SELECT count(*) FROM executions") == 1
    await running.wait(responses[0].json()["executionId"])


async def test_update_creates_a_version_and_executions_stay_pinned(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    created = await running.create_workflow(document("pinned", "v1"))
    assert created["version"] == 1
    v1_id = created["activeVersionId"]
    execution_id = await running.execute("pinned")

    response = await running.client.put(
        f"/api/workflows/{created['id']}", json=document("pinned", "v2")
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["id"] == created["id"]
    assert updated["version"] == 2
    assert updated["activeVersionId"] != v1_id
    assert updated["definition"]["steps"][1]["config"]["output"]["message"] == "v2"

    first = await running.wait(execution_id)
    assert first["status"] == "completed"
    assert first["workflowVersionId"] == v1_id
    assert first["output"] == {"message": "v1"}
    second = await running.wait(await running.execute("pinned"))
    assert second["workflowVersionId"] == updated["activeVersionId"]
    assert second["output"] == {"message": "v2"}

    # The same document again is not a new version.
    before = await counts(running)
    same = await running.client.put("/api/workflows/pinned", json=document("pinned", "v2"))
    assert same.status_code == 200, same.text
    assert same.json()["version"] == 2
    assert same.json()["activeVersionId"] == updated["activeVersionId"]
    assert await counts(running) == before

    listing = await running.client.get(f"/api/workflows/{created['id']}/versions")
    assert listing.status_code == 200
    versions = listing.json()["versions"]
    assert [(v["version"], v["id"]) for v in versions] == [
        (2, updated["activeVersionId"]),
        (1, v1_id),
    ]
    assert versions[1]["definition"]["steps"][1]["config"]["output"]["message"] == "v1"
    one = await running.client.get("/api/workflows/pinned/versions/1")
    assert one.status_code == 200 and one.json()["id"] == v1_id
    assert (await running.client.get("/api/workflows/pinned/versions/9")).status_code == 404


async def test_archived_workflow_cannot_execute(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url)
    created = await running.create_workflow(document("old"))
    done = await running.wait(await running.execute("old"))

    response = await running.client.delete(f"/api/workflows/{created['id']}")
    assert response.status_code == 200, response.text
    assert response.json()["archivedAt"] is not None

    before = await counts(running)
    by_id = await running.client.post(f"/api/workflows/{created['id']}/execute", json={})
    assert by_id.status_code == 409, by_id.text
    assert "archived" in by_id.json()["detail"]
    # By name, an archived workflow is gone.
    assert (await running.client.post("/api/workflows/old/execute", json={})).status_code == 404
    put = await running.client.put(f"/api/workflows/{created['id']}", json=document("old", "x"))
    assert put.status_code == 409
    assert await counts(running) == before

    # History stays readable; the name can be used again by a new workflow.
    assert (await running.client.get(f"/api/executions/{done['id']}")).status_code == 200
    listed = await running.client.get("/api/workflows")
    assert created["id"] not in [w["id"] for w in listed.json()["workflows"]]
    archived = await running.client.get("/api/workflows", params={"includeArchived": "true"})
    assert created["id"] in [w["id"] for w in archived.json()["workflows"]]
    reborn = await running.create_workflow(document("old"))
    assert reborn["id"] != created["id"]


async def test_schedule_triggers_through_the_api(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url)
    created = await running.create_workflow(document("cronned"))
    url = f"/api/workflows/{created['id']}/triggers"

    added = await running.client.post(
        url, json={"type": "schedule", "cron": "*/5 * * * *", "timezone": "Europe/Paris"}
    )
    assert added.status_code == 201, added.text
    trigger = added.json()
    assert trigger["type"] == "schedule" and trigger["cron"] == "*/5 * * * *"
    assert trigger["timezone"] == "Europe/Paris" and trigger["enabled"] is True

    changed = await running.client.put(
        f"/api/triggers/{trigger['id']}",
        json={"type": "schedule", "cron": "0 9 * * 1-5", "timezone": "UTC", "enabled": False},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["cron"] == "0 9 * * 1-5" and changed.json()["enabled"] is False
    listed = (await running.client.get(url)).json()["triggers"]
    assert [(t["id"], t["cron"], t["enabled"]) for t in listed] == [
        (trigger["id"], "0 9 * * 1-5", False)
    ]

    before = await counts(running)
    for bad in (
        {"type": "schedule", "cron": "not a cron"},
        {"type": "schedule", "cron": "* * * *"},
        {"type": "schedule", "cron": "61 * * * *"},
        {"type": "schedule", "cron": "* * * * *", "timezone": "Mars/Olympus"},
        {"type": "schedule", "cron": "* * * * *", "extra": 1},
        {"type": "sometimes"},
    ):
        response = await running.client.post(url, json=bad)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["detail"]
        response = await running.client.put(f"/api/triggers/{trigger['id']}", json=bad)
        assert response.status_code == 422, (bad, response.text)
    assert await counts(running) == before
    assert (await running.client.get(url)).json()["triggers"] == listed

    type_change = await running.client.put(
        f"/api/triggers/{trigger['id']}", json={"type": "manual"}
    )
    assert type_change.status_code == 409

    deleted = await running.client.delete(f"/api/triggers/{trigger['id']}")
    assert deleted.status_code == 204
    assert (await running.client.get(url)).json()["triggers"] == []
    assert (await running.client.delete(f"/api/triggers/{trigger['id']}")).status_code == 404
    missing = await running.client.post(
        "/api/workflows/no-such/triggers", json={"type": "schedule", "cron": "* * * * *"}
    )
    assert missing.status_code == 404


# --- the embedded scheduler ----------------------------------------------------------------------


def stop_background_scheduler(running: Running) -> None:
    """Cancel the scheduler's own loop so that only the test calls `fire_due`."""
    for task in running.engine._background:
        if task.get_name() == "scheduler":
            task.cancel()


async def schedule_executions(running: Running) -> list[dict[str, Any]]:
    response = await running.client.get("/api/executions", params={"workflowId": "ticking"})
    executions: list[dict[str, Any]] = response.json()["executions"]
    return executions


async def test_scheduler_fires_once_per_slot(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url)
    stop_background_scheduler(running)
    scheduler = running.engine.scheduler
    # Yearly, so that the real clock never makes a slot due during the test.
    created = await running.create_workflow(
        document(
            "ticking",
            triggers=[{"type": "schedule", "cron": "0 0 1 1 *", "input": {"from": "cron"}}],
        )
    )
    [trigger] = created["triggers"]
    assert await scheduler.fire_due() == 0
    [(trigger_id, (next_slot, config))] = scheduler._next.items()
    assert trigger_id == trigger["id"]
    assert next_slot > datetime.now(UTC)

    slot = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    scheduler._next[trigger_id] = (slot, config)
    assert await scheduler.fire_due() == 1
    [execution] = await schedule_executions(running)
    assert execution["triggerId"] == trigger_id
    assert execution["input"] == {"from": "cron"}
    key = await scalar(
        running, "SELECT idempotency_key FROM executions WHERE id = :id", id=execution["id"]
    )
    assert key == f"schedule:{trigger_id}:{slot.isoformat()}"
    # Nothing more is due until the next real slot.
    assert scheduler._next[trigger_id][0] > datetime.now(UTC)
    assert await scheduler.fire_due() == 0

    # The same slot again (a restart, a second scheduler): no second execution.
    scheduler._next[trigger_id] = (slot, config)
    assert await scheduler.fire_due() == 0
    assert len(await schedule_executions(running)) == 1

    # The next slot: one more.
    scheduler._next[trigger_id] = (slot + timedelta(minutes=1), config)
    assert await scheduler.fire_due() == 1
    executions = await schedule_executions(running)
    assert len(executions) == 2
    for item in executions:
        body = await running.wait(item["id"])
        assert body["status"] == "completed" and body["output"] == {"message": "v1"}

    # Disabled (via archive): the slot no longer fires.
    await running.client.delete(f"/api/workflows/{created['id']}")
    assert await scheduler.fire_due() == 0
    assert scheduler._next == {}
    assert len(await schedule_executions_by_id(running, created["id"])) == 2


async def schedule_executions_by_id(running: Running, workflow_id: str) -> list[dict[str, Any]]:
    response = await running.client.get("/api/executions", params={"workflowId": workflow_id})
    executions: list[dict[str, Any]] = response.json()["executions"]
    return executions
