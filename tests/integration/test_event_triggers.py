"""`event` triggers on SQLite and PostgreSQL: `POST /api/events` starts every workflow listening
to the event's name, once per event and trigger, with the event's `data` as input."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import Running, StartEngine
from tests.support.flows import sql, start
from tests.support.pages import page

pytestmark = pytest.mark.timeout(60)


def listener(name: str, event: str = "lead.created", **trigger: Any) -> dict[str, Any]:
    return {
        "name": name,
        "steps": [
            {
                "key": "seen",
                "type": "transform",
                "config": {"output": {"by": name, "lead": "{{ input.lead }}"}},
            }
        ],
        "triggers": [{"type": "event", "event": event, **trigger}],
    }


async def post(running: Running, name: str, key: str = "", data: Any = None) -> dict[str, Any]:
    response = await running.client.post(
        "/api/events", json={"name": name, "key": key, "data": data}
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_event_starts_every_workflow_listening_to_its_name(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    first = await running.create_workflow(listener("first"))
    second = await running.create_workflow(listener("second"))
    await running.create_workflow(listener("elsewhere", event="lead.lost"))
    off = await running.create_workflow(listener("off", enabled=False))
    archived = await running.create_workflow(listener("archived"))
    assert (await running.client.delete(f"/api/workflows/{archived['id']}")).status_code == 200
    triggers = {w["id"]: w["triggers"][0]["id"] for w in (first, second)}
    assert "named <code>lead.created</code>" in await page(running, f"/workflows/{first['id']}")
    assert off["triggers"][0]["event"] == "lead.created"

    posted = await post(running, "lead.created", "7", {"lead": 7})
    assert posted["matched"] == 0
    started = posted["started"]
    assert sorted(s["workflowId"] for s in started) == sorted(triggers)
    for entry in started:
        assert entry["triggerId"] == triggers[entry["workflowId"]]
        body = await running.wait(entry["executionId"])
        assert body["status"] == "completed", body
        assert body["input"] == {"lead": 7}
        assert body["triggerId"] == entry["triggerId"]
        assert body["workflowId"] == entry["workflowId"]
    outputs = {
        (await running.wait(s["executionId"]))["output"]["by"]: s["workflowId"] for s in started
    }
    assert outputs == {"first": first["id"], "second": second["id"]}
    # One per event and trigger, keyed by both.
    rows = await sql(running, "SELECT trigger_id, idempotency_key FROM executions")
    assert sorted(r["idempotency_key"] for r in rows) == sorted(
        f"event:{posted['eventId']}:{t}" for t in triggers.values()
    )

    again = await post(running, "lead.created", "", None)  # no data: no input
    assert len(again["started"]) == 2
    for entry in again["started"]:
        assert (await running.wait(entry["executionId"]))["input"] == {}
    assert (await post(running, "lead.nobody"))["started"] == []
    [count] = await sql(running, "SELECT count(*) AS n FROM executions")
    assert count["n"] == 4


async def test_an_event_wakes_its_waits_and_starts_its_triggers_at_once(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(listener("on-paid", event="order.paid"))
    await running.create_workflow(
        {
            "name": "order",
            "steps": [
                {"key": "paid", "type": "wait", "config": {"event": "order.paid", "key": "9"}}
            ],
        }
    )
    waiting = await running.execute("order")
    await running.wait(waiting, until=lambda e: e["status"] == "waiting")
    posted = await post(running, "order.paid", "9", {"lead": 9})
    assert posted["matched"] == 1 and len(posted["started"]) == 1
    assert (await running.wait(waiting))["output"] == {"lead": 9}
    started = await running.wait(posted["started"][0]["executionId"])
    assert started["output"] == {"by": "on-paid", "lead": 9}


async def test_concurrent_events_start_one_execution_each(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    workflow = await running.create_workflow(listener("burst"))
    answers = await asyncio.gather(
        *(post(running, "lead.created", str(n), {"lead": n}) for n in range(20))
    )
    ids = [s["executionId"] for a in answers for s in a["started"]]
    assert len(ids) == 20 and len(set(ids)) == 20
    inputs = sorted([(await running.wait(i))["input"]["lead"] for i in ids])
    assert inputs == list(range(20))
    rows = await sql(
        running, "SELECT count(*) AS n FROM executions WHERE workflow_id = :w", w=workflow["id"]
    )
    assert rows == [{"n": 20}]


async def test_event_triggers_through_the_triggers_api(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    workflow = await running.create_workflow({**listener("late"), "triggers": []})
    added = await running.client.post(
        f"/api/workflows/{workflow['id']}/triggers", json={"type": "event", "event": "lead.late"}
    )
    assert added.status_code == 201, added.text
    assert added.json()["event"] == "lead.late"
    [entry] = (await post(running, "lead.late", data={"lead": 1}))["started"]
    assert entry["triggerId"] == added.json()["id"]
    # Renamed: the old name starts nothing, the new one does.
    changed = await running.client.put(
        f"/api/triggers/{added.json()['id']}", json={"type": "event", "event": "lead.renamed"}
    )
    assert changed.status_code == 200, changed.text
    assert (await post(running, "lead.late"))["started"] == []
    assert len((await post(running, "lead.renamed"))["started"]) == 1
    refused = await running.client.post(
        f"/api/workflows/{workflow['id']}/triggers", json={"type": "event", "event": ""}
    )
    assert refused.status_code == 422, refused.text
