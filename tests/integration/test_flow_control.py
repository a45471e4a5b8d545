"""Flow control (DESIGN.md section 14) on SQLite and PostgreSQL: `concurrency` per key,
`priority` on execute, `debounce` on event triggers."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import Running, StartEngine
from tests.support.flows import scalar, sql, start
from tests.support.target import Target

pytestmark = pytest.mark.timeout(120)
TENANTS = ("acme", "globex", "initech")


def per_tenant(name: str, ms: int = 300, limit: int = 2) -> dict[str, Any]:
    return {
        "name": name,
        "concurrency": {"key": "{{ input.tenantId }}", "limit": limit},
        "steps": [{"key": "work", "type": "delay", "config": {"ms": ms}}],
    }


async def running_per_key(running: Running, workflow_id: str) -> dict[str, int]:
    rows = await sql(
        running,
        "SELECT concurrency_key AS k, count(*) AS n FROM executions "
        "WHERE workflow_id = :w AND status = 'running' GROUP BY concurrency_key",
        w=workflow_id,
    )
    return {row["k"]: int(row["n"]) for row in rows}


async def test_concurrency_caps_running_executions_per_key(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url, execution_concurrency=10)
    workflow = await running.create_workflow(per_tenant("tenants"))
    ids = [
        await running.execute("tenants", {"tenantId": tenant, "n": n})
        for n in range(10)
        for tenant in TENANTS
    ]
    peaks = dict.fromkeys(TENANTS, 0)
    most_at_once = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while loop.time() < deadline:
        now = await running_per_key(running, workflow["id"])
        for tenant, n in now.items():
            peaks[tenant] = max(peaks[tenant], n)
        most_at_once = max(most_at_once, sum(now.values()))
        done = await scalar(
            running,
            "SELECT count(*) FROM executions WHERE workflow_id = :w AND status = 'completed'",
            w=workflow["id"],
        )
        if done == len(ids):
            break
        await asyncio.sleep(0.02)
    assert set(peaks) == set(TENANTS)
    assert all(peak <= 2 for peak in peaks.values()), peaks
    # The cap is per key: several tenants ran at once, more than one tenant's limit.
    assert most_at_once > 2, most_at_once
    bodies = [await running.wait(i) for i in ids]
    assert {b["status"] for b in bodies} == {"completed"}
    assert {b["concurrencyKey"] for b in bodies} == set(TENANTS)
    assert all(b["input"]["tenantId"] == b["concurrencyKey"] for b in bodies)


async def test_a_tenant_at_its_limit_does_not_hold_up_the_others(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url, execution_concurrency=4)
    await running.create_workflow(
        {
            "name": "held",
            "concurrency": {"key": "{{ input.tenantId }}", "limit": 1},
            "steps": [
                {
                    "key": "call",
                    "type": "http",
                    "config": {"url": f"{target.url}/hold/{{{{ input.tenantId }}}}"},
                }
            ],
        }
    )
    # The busy tenant's executions are queued first, and its first one holds its only slot.
    busy = [await running.execute("held", {"tenantId": "busy"}) for _ in range(6)]
    other = await running.execute("held", {"tenantId": "other"})
    target.release("other")
    assert (await running.wait(other))["status"] == "completed"
    statuses = [(await running.wait(i, until=lambda e: True))["status"] for i in busy]
    assert statuses.count("running") == 1, statuses
    assert statuses.count("pending") == 5, statuses  # waiting their turn, not failed
    target.release("busy")
    assert [(await running.wait(i))["status"] for i in busy] == ["completed"] * 6


async def test_an_input_without_the_key_shares_the_empty_key(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(per_tenant("keyless", ms=10))
    body = await running.wait(await running.execute("keyless", {"no": "tenant"}))
    assert body["status"] == "completed"
    assert body["concurrencyKey"] == ""


async def test_priority_orders_the_backlog(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url, execution_concurrency=1)
    await running.create_workflow(
        {
            "name": "blocker",
            "steps": [{"key": "hold", "type": "http", "config": {"url": f"{target.url}/hold/b"}}],
        }
    )
    await running.create_workflow(
        {"name": "quick", "steps": [{"key": "t", "type": "transform", "config": {"output": 1}}]}
    )
    blocker = await running.execute("blocker")
    await running.wait(blocker, until=lambda e: e["status"] == "running")
    priorities: dict[str, int] = {}
    for n in range(5):  # the low ones asked first
        for priority in (1, 10):
            response = await running.client.post(
                "/api/workflows/quick/execute", json={"input": {"n": n}, "priority": priority}
            )
            assert response.status_code == 202, response.text
            priorities[response.json()["executionId"]] = priority
    await wait_backlog(running, len(priorities))
    target.release("b")
    bodies = [await running.wait(i) for i in priorities]
    assert {b["status"] for b in bodies} == {"completed"}
    assert {b["id"]: b["priority"] for b in bodies} == priorities
    order = [b["priority"] for b in sorted(bodies, key=lambda b: b["startedAt"])]
    assert order == [10] * 5 + [1] * 5, order


async def wait_backlog(running: Running, jobs: int) -> None:
    """Until `jobs` execution jobs wait for the (busy) worker: all of them dispatched."""
    for _ in range(1000):
        queues = (await running.client.get("/api/queues")).json()["queues"]
        if queues["workflow-execution"]["waiting"] >= jobs:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the backlog never formed: {queues}")


async def test_priority_outside_one_to_ten_is_refused(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(
        {"name": "quick", "steps": [{"key": "t", "type": "transform", "config": {"output": 1}}]}
    )
    for priority in (0, 11, "high"):
        response = await running.client.post(
            "/api/workflows/quick/execute", json={"input": {}, "priority": priority}
        )
        assert response.status_code == 422, response.text
        assert "priority" in response.text
    assert await scalar(running, "SELECT count(*) FROM executions") == 0
    default = await running.wait(await running.execute("quick"))
    assert default["priority"] == 5


async def test_a_rerun_keeps_the_priority(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(
        {"name": "failing", "steps": [{"key": "f", "type": "fail", "config": {"message": "no"}}]}
    )
    response = await running.client.post(
        "/api/workflows/failing/execute", json={"input": {}, "priority": 9}
    )
    failed = await running.wait(response.json()["executionId"])
    assert (failed["status"], failed["priority"]) == ("failed", 9)
    rerun = await running.client.post(f"/api/executions/{failed['id']}/rerun")
    assert rerun.status_code == 202, rerun.text
    again = await running.wait(rerun.json()["executionId"])
    assert (again["rerunOfId"], again["priority"]) == (failed["id"], 9)


def debounced(name: str, period_ms: int = 3000) -> dict[str, Any]:
    return {
        "name": name,
        "steps": [{"key": "seen", "type": "transform", "config": {"output": "{{ input }}"}}],
        "triggers": [
            {
                "type": "event",
                "event": "lead.updated",
                "debounce": {"key": "{{ input.leadId }}", "periodMs": period_ms},
            }
        ],
    }


async def test_a_burst_of_debounced_events_starts_one_execution_with_the_last_input(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    workflow = await running.create_workflow(debounced("debounced"))
    for n in range(20):
        response = await running.client.post(
            "/api/events", json={"name": "lead.updated", "data": {"leadId": 7, "n": n}}
        )
        assert response.status_code == 202, response.text
        assert response.json()["started"] == []
    # Another key is a burst of its own.
    await running.client.post("/api/events", json={"name": "lead.updated", "data": {"leadId": 8}})
    held = await sql(running, "SELECT key, calls FROM debounces ORDER BY key")
    assert held == [{"key": "7", "calls": 20}, {"key": "8", "calls": 1}]

    rows = await finished_executions(running, workflow["id"], 2)
    assert await scalar(running, "SELECT count(*) FROM debounces") == 0  # nothing more to fire
    by_lead = {row["output"]["leadId"]: row for row in rows}
    assert by_lead[7]["output"] == {"leadId": 7, "n": 19}
    assert by_lead[8]["output"] == {"leadId": 8}
    assert {row["triggerId"] for row in rows} == {workflow["triggers"][0]["id"]}


async def finished_executions(running: Running, workflow_id: str, n: int) -> list[dict[str, Any]]:
    for _ in range(1000):
        listed = await running.client.get(f"/api/executions?workflowId={workflow_id}")
        items = [e for e in listed.json()["executions"] if e["status"] == "completed"]
        if len(items) >= n:
            assert len(listed.json()["executions"]) == n, listed.json()
            return [(await running.client.get(f"/api/executions/{e['id']}")).json() for e in items]
        await asyncio.sleep(0.02)
    raise AssertionError("the debounced executions did not finish")


async def test_a_debounced_burst_fires_once_however_many_ask(
    db_url: str, start_engine: StartEngine
) -> None:
    # Two engines on one database (two serve processes): each one's timer and reconciler try to
    # fire the burst; the conditional delete lets one of them.
    first = await start(start_engine, db_url)
    second = await start(start_engine, db_url)
    workflow = await first.create_workflow(debounced("twice", period_ms=300))
    for n, running in enumerate([first, second] * 5):
        await running.client.post(
            "/api/events", json={"name": "lead.updated", "data": {"leadId": 1, "n": n}}
        )
    rows = await finished_executions(first, workflow["id"], 1)
    assert rows[0]["output"] == {"leadId": 1, "n": 9}
    for running in (first, second):
        await running.engine.reconciler.run_once()
    listed = (await first.client.get(f"/api/executions?workflowId={workflow['id']}")).json()
    assert len(listed["executions"]) == 1


async def test_a_debounced_webhook_keeps_the_call(
    db_url: str, start_engine: StartEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKFLOW_SECRET_HOOK", "hook-secret")
    running = await start(start_engine, db_url)
    workflow = await running.create_workflow(
        {
            "name": "hooked",
            "steps": [{"key": "seen", "type": "transform", "config": {"output": "{{ input }}"}}],
            "triggers": [
                {
                    "type": "webhook",
                    "path": "lead",
                    "secret": "{{ secrets.HOOK }}",
                    "debounce": {"key": "{{ input.k }}", "periodMs": 500},
                }
            ],
        }
    )
    trigger = workflow["triggers"][0]
    assert trigger["debounce"] == {"key": "{{ input.k }}", "periodMs": 500}
    # Called by an operator's key, then signed (with ?wait=, which a kept call does not use).
    for n in range(2):
        response = await running.client.post(
            f"/api/triggers/{trigger['id']}/fire", json={"input": {"k": "a", "n": n}}
        )
        assert response.status_code == 202, response.text
        assert response.json()["debounced"] is True
        assert response.json()["key"] == "a"
    async with httpx.AsyncClient(
        transport=running.client._transport, base_url="http://engine.test"
    ) as anonymous:
        response = await anonymous.post(
            "/api/hooks/lead?wait=2000",
            content=b'{"k": "a", "n": 2}',
            headers={"Authorization": "Bearer hook-secret", "Content-Type": "application/json"},
        )
    assert response.status_code == 202, response.text
    assert response.json()["debounced"] is True
    assert response.json()["triggerId"] == trigger["id"]
    rows = await finished_executions(running, workflow["id"], 1)
    assert rows[0]["output"] == {"k": "a", "n": 2}
    assert rows[0]["triggerId"] == trigger["id"]
