"""Durable waits in the embedded mode (SQLite and PostgreSQL): long delays, `wait` steps and
`POST /api/events`, timeouts, cancel while waiting, graphs that park."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.conftest import Running, StartEngine
from tests.support.flows import sql, start
from tests.support.target import Target

pytestmark = pytest.mark.timeout(60)
FAST = {"durable_delay_min_ms": 500, "reconcile_interval_ms": 300}


def waiting(body: dict[str, Any]) -> bool:
    return body["status"] == "waiting"


async def post_event(running: Running, name: str, key: str, data: Any = None) -> dict[str, Any]:
    response = await running.client.post(
        "/api/events", json={"name": name, "key": key, "data": data}
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def execution_row(running: Running, execution_id: str) -> dict[str, Any]:
    [row] = await sql(
        running,
        "SELECT status, lease_owner, lease_expires_at, wake_at FROM executions WHERE id = :id",
        id=execution_id,
    )
    return row


def order_workflow(name: str, target: Target, **wait: Any) -> dict[str, Any]:
    return {
        "name": name,
        "steps": [
            {"key": "before", "type": "http", "config": {"url": f"{target.url}/count/{name}"}},
            {
                "key": "paid",
                "type": "wait",
                "config": {"event": "order.paid", "key": "{{ input.orderId }}", **wait},
            },
            {"key": "after", "type": "transform", "config": {"output": "{{ steps.paid.output }}"}},
        ],
    }


async def test_long_delay_parks_frees_the_worker_then_completes(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url, execution_concurrency=1, **FAST)
    await running.create_workflow(
        {
            "name": "nap",
            "steps": [
                {"key": "before", "type": "http", "config": {"url": f"{target.url}/count/nap"}},
                {"key": "sleep", "type": "delay", "config": {"ms": 3_000}},
                {"key": "after", "type": "transform", "config": {"output": {"done": True}}},
            ],
        }
    )
    await running.create_workflow(
        {"name": "quick", "steps": [{"key": "q", "type": "transform", "config": {"output": 1}}]}
    )
    execution_id = await running.execute("nap")
    body = await running.wait(execution_id, until=waiting)
    assert body["wakeAt"] is not None
    assert body["waits"] == [
        {
            "stepKey": "sleep",
            "type": "delay",
            "event": None,
            "until": body["wakeAt"],
            "onTimeout": "fail",
            "approval": None,
        }
    ]
    row = await execution_row(running, execution_id)
    assert row["lease_owner"] is None and row["lease_expires_at"] is None
    # The only worker slot is free: another execution runs to the end meanwhile.
    quick = await running.wait(await running.execute("quick"), timeout=5)
    assert quick["status"] == "completed"
    assert (await running.client.get(f"/api/executions/{execution_id}")).json()["status"] == (
        "waiting"
    )

    body = await running.wait(execution_id, timeout=15)
    assert body["status"] == "completed", body
    assert body["output"] == {"done": True}
    steps = {s["stepKey"]: s for s in body["steps"]}
    assert steps["sleep"]["output"] == {"delayedMs": 3_000}
    assert steps["sleep"]["durationMs"] >= 3_000
    assert len(target.hits("count/nap")) == 1
    assert body["wakeAt"] is None and body["waits"] == []
    events = await sql(
        running,
        "SELECT type FROM execution_events WHERE execution_id = :id ORDER BY seq",
        id=execution_id,
    )
    types = [e["type"] for e in events]
    assert types.count("waiting") == 1 and types.count("resumed") == 1
    assert types.index("waiting") < types.index("resumed") < types.index("completed")


async def test_short_delay_still_sleeps_in_the_worker(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url, **FAST)
    await running.create_workflow(
        {"name": "short", "steps": [{"key": "d", "type": "delay", "config": {"ms": 100}}]}
    )
    body = await running.wait(await running.execute("short"), timeout=5)
    assert body["status"] == "completed"
    events = await sql(running, "SELECT type FROM execution_events WHERE type = 'waiting'")
    assert events == []


async def test_wait_step_resumed_by_an_event(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url, **FAST)
    await running.create_workflow(order_workflow("order", target, timeoutMs=60_000))
    execution_id = await running.execute("order", {"orderId": 42})
    body = await running.wait(execution_id, until=waiting)
    [wait] = body["waits"]
    assert wait["event"] == {"name": "order.paid", "key": "42"} and wait["until"] is not None

    # Another key, or another name: not this wait (kept for later waits).
    assert (await post_event(running, "order.paid", "43", {"x": 1}))["matched"] == 0
    assert (await post_event(running, "order.shipped", "42"))["matched"] == 0
    posted = await post_event(running, "order.paid", "42", {"amount": 12.5})
    assert posted["matched"] == 1 and posted["eventId"]

    body = await running.wait(execution_id, timeout=10)
    assert body["status"] == "completed", body
    assert body["output"] == {"amount": 12.5}
    steps = {s["stepKey"]: s for s in body["steps"]}
    assert steps["paid"]["output"] == {"amount": 12.5}
    assert len(target.hits("count/order")) == 1


async def test_a_waiting_execution_goes_on_after_its_workflow_is_archived(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    """Archiving stops the executions that have not started; one that started and waits since
    is resumed by its event and runs to its end, as a running one does."""
    running = await start(start_engine, db_url, **FAST)
    workflow = await running.create_workflow(order_workflow("kept", target, timeoutMs=60_000))
    execution_id = await running.execute("kept", {"orderId": 7})
    await running.wait(execution_id, until=waiting)
    assert (await running.client.delete(f"/api/workflows/{workflow['id']}")).status_code == 200
    assert (await post_event(running, "order.paid", "7", {"ok": True}))["matched"] == 1
    body = await running.wait(execution_id, timeout=10)
    assert body["status"] == "completed", body
    assert body["output"] == {"ok": True}


async def test_event_posted_before_the_wait_is_matched_when_it_registers(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url, **FAST)
    await running.create_workflow(order_workflow("early", target))
    assert (await post_event(running, "order.paid", "7", {"early": True}))["matched"] == 0
    body = await running.wait(await running.execute("early", {"orderId": "7"}), timeout=10)
    assert body["status"] == "completed", body
    assert body["output"] == {"early": True}
    # Consumed: a second execution waiting for the same event does not get it again.
    second = await running.execute("early", {"orderId": "7"})
    assert (await running.wait(second, until=waiting))["status"] == "waiting"


async def test_the_same_event_twice_at_once_resumes_a_wait_once(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url, **FAST)
    await running.create_workflow(order_workflow("twice", target))
    execution_id = await running.execute("twice", {"orderId": "9"})
    await running.wait(execution_id, until=waiting)
    answers = await asyncio.gather(
        *(post_event(running, "order.paid", "9", {"n": n}) for n in range(5))
    )
    assert sorted(a["matched"] for a in answers) == [0, 0, 0, 0, 1]
    body = await running.wait(execution_id, timeout=10)
    assert body["status"] == "completed"
    events = await sql(
        running,
        "SELECT type FROM execution_events WHERE execution_id = :id AND type = 'resumed'",
        id=execution_id,
    )
    assert len(events) == 1
    starts = [s for s in body["steps"] if s["stepKey"] == "after"]
    assert len(starts) == 1 and starts[0]["retryCount"] == 0


async def test_wait_past_its_timeout_fails_not_retried(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url, **FAST)
    document = order_workflow("late", target, timeoutMs=800)
    document["retryMaxAttempts"] = 3
    await running.create_workflow(document)
    body = await running.wait(await running.execute("late", {"orderId": 1}), timeout=10)
    assert body["status"] == "failed", body
    assert body["error"].startswith("Step 'paid' failed: Timed out after 800 ms waiting for event")
    steps = {s["stepKey"]: s for s in body["steps"]}
    assert steps["paid"]["status"] == "failed" and steps["paid"]["retryCount"] == 0
    assert "after" not in steps


async def test_wait_past_its_timeout_continues_with_on_timeout_continue(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url, **FAST)
    await running.create_workflow(
        order_workflow("lenient", target, timeoutMs=500, onTimeout="continue")
    )
    body = await running.wait(await running.execute("lenient", {"orderId": 1}), timeout=10)
    assert body["status"] == "completed", body
    steps = {s["stepKey"]: s for s in body["steps"]}
    assert steps["paid"]["status"] == "completed" and steps["paid"]["output"] is None
    assert steps["after"]["status"] == "completed"


async def test_cancel_while_waiting(db_url: str, start_engine: StartEngine, target: Target) -> None:
    running = await start(start_engine, db_url, **FAST)
    await running.create_workflow(order_workflow("cancel-me", target))
    execution_id = await running.execute("cancel-me", {"orderId": 5})
    await running.wait(execution_id, until=waiting)
    response = await running.client.post(f"/api/executions/{execution_id}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    body = await running.wait(execution_id, timeout=2)
    assert body["status"] == "cancelled" and body["error"] == "Cancelled"
    steps = {s["stepKey"]: s for s in body["steps"]}
    assert steps["paid"]["status"] == "failed" and steps["paid"]["error"] == "Cancelled"
    assert (
        await sql(
            running, "SELECT * FROM execution_waits WHERE execution_id = :id", id=execution_id
        )
        == []
    )
    # The event no longer resumes anything; cancelling again is a no-op.
    assert (await post_event(running, "order.paid", "5"))["matched"] == 0
    again = await running.client.post(f"/api/executions/{execution_id}/cancel")
    assert again.status_code == 202 and again.json()["status"] == "cancelled"
    # A log line is stored once, in execution_logs with its event's seq: the events and the
    # lines together are numbered without a gap.
    events = await sql(
        running,
        "SELECT seq, type FROM execution_events WHERE execution_id = :id UNION ALL "
        "SELECT seq, 'log' FROM execution_logs WHERE execution_id = :id AND seq IS NOT NULL "
        "ORDER BY seq",
        id=execution_id,
    )
    assert events[-1]["type"] == "cancelled"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    # A cancelled execution can be re-run: the completed step is carried over, and its wait
    # consumes the event posted above (kept since it met no wait).
    rerun = await running.client.post(f"/api/executions/{execution_id}/rerun")
    assert rerun.status_code == 202
    new = await running.wait(rerun.json()["executionId"], timeout=10)
    assert new["status"] == "completed", new
    assert len(target.hits("count/cancel-me")) == 1


async def test_graph_parks_only_when_no_other_branch_runs(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url, **FAST)
    await running.create_workflow(
        {
            "name": "two-branches",
            "steps": [
                {"key": "sleep", "type": "delay", "needs": [], "config": {"ms": 1_000}},
                {
                    "key": "work",
                    "type": "http",
                    "needs": [],
                    "config": {"url": f"{target.url}/slow?ms=1500"},
                },
                {
                    "key": "join",
                    "type": "transform",
                    "needs": ["sleep", "work"],
                    "config": {"output": {"slept": "{{ steps.sleep.output.delayedMs }}"}},
                },
            ],
        }
    )
    execution_id = await running.execute("two-branches")
    body = await running.wait(execution_id, timeout=15)
    assert body["status"] == "completed", body
    assert body["output"] == {"slept": 1_000}
    assert len(target.hits("slow")) == 1
    # The delay ended while `work` still ran: the execution never parked.
    events = await sql(
        running,
        "SELECT type FROM execution_events WHERE execution_id = :id ORDER BY seq",
        id=execution_id,
    )
    types = [e["type"] for e in events]
    assert "waiting" in types  # the delay registered its wait...
    # ...and the execution went on once `work` ended: a single delivery.
    logs = [entry["message"] for entry in body["logs"]]
    assert not any("resumed (delivery" in message for message in logs)


async def test_two_waits_in_parallel_branches_park_once_both_are_met(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url, **FAST)
    wait = {"type": "wait", "needs": []}
    await running.create_workflow(
        {
            "name": "both",
            "steps": [
                {**wait, "key": "a", "config": {"event": "a", "key": "{{ input.k }}"}},
                {**wait, "key": "b", "config": {"event": "b", "key": "{{ input.k }}"}},
                {
                    "key": "join",
                    "type": "transform",
                    "needs": ["a", "b"],
                    "config": {"output": ["{{ steps.a.output }}", "{{ steps.b.output }}"]},
                },
            ],
        }
    )
    execution_id = await running.execute("both", {"k": "x"})
    body = await running.wait(execution_id, until=waiting)
    assert sorted(w["stepKey"] for w in body["waits"]) == ["a", "b"]
    assert (await post_event(running, "a", "x", 1))["matched"] == 1
    body = await running.wait(
        execution_id, until=lambda e: e["status"] == "waiting" and len(e["waits"]) == 1
    )
    assert body["waits"][0]["stepKey"] == "b"
    assert (await post_event(running, "b", "x", 2))["matched"] == 1
    body = await running.wait(execution_id, timeout=10)
    assert body["status"] == "completed" and body["output"] == [1, 2]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "a", "key": "k" * 201}, "key"),
        ({"name": "a", "key": 42}, "key"),
        ({"name": "a", "other": 1}, "other"),
    ],
)
async def test_bad_events_are_refused_with_a_clear_4xx(
    db_url: str, start_engine: StartEngine, payload: dict[str, Any], message: str
) -> None:
    running = await start(start_engine, db_url, **FAST)
    response = await running.client.post("/api/events", json=payload)
    assert response.status_code == 422, response.text
    assert message in response.text
    bad_json = await running.client.post(
        "/api/events", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert 400 <= bad_json.status_code < 500


async def test_pages_show_what_an_execution_waits_for(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    from tests.integration.test_ui_pages import _browser, _login

    running = await start(start_engine, db_url, **FAST)
    await running.create_workflow(order_workflow("shown", target, timeoutMs=600_000))
    await running.create_workflow(
        {"name": "sleeper", "steps": [{"key": "z", "type": "delay", "config": {"ms": 60_000}}]}
    )
    order_id = await running.execute("shown", {"orderId": 42})
    sleeper_id = await running.execute("sleeper")
    await running.wait(order_id, until=waiting)
    await running.wait(sleeper_id, until=waiting)
    async with _browser(running) as browser:
        await _login(browser)
        page = (await browser.get(f"/executions/{order_id}")).text
        assert 'id="wait-note"' in page
        assert "waiting for event <code>order.paid</code> (key <code>42</code>) until" in page
        assert 'data-status="waiting"' in page
        sleeping = (await browser.get(f"/executions/{sleeper_id}")).text
        assert "sleeping until" in sleeping
        monitoring = await browser.get("/monitoring?status=waiting")
        assert '<option value="waiting" selected' in monitoring.text
        assert order_id in monitoring.text and sleeper_id in monitoring.text
    listed = await running.client.get("/api/executions", params={"status": "waiting"})
    assert {e["id"] for e in listed.json()["executions"]} == {order_id, sleeper_id}


async def test_metrics_count_a_waiting_execution_once_when_it_finishes(
    db_url: str, start_engine: StartEngine
) -> None:
    from tests.integration.test_metrics import scrape, value

    running = await start(start_engine, db_url, **FAST)
    name = f"metered-{uuid.uuid4().hex[:8]}"  # metrics are per process: a name of its own
    await running.create_workflow(
        {"name": name, "steps": [{"key": "w", "type": "wait", "config": {"event": name}}]}
    )
    execution_id = await running.execute(name)
    await running.wait(execution_id, until=waiting)
    finished = "workflow_engine_executions_finished_total"
    samples = await scrape(running)
    assert all(
        value(samples, finished, workflow=name, status=s) == 0 for s in ("waiting", "completed")
    )
    assert (await post_event(running, name, ""))["matched"] == 1
    assert (await running.wait(execution_id, timeout=10))["status"] == "completed"
    samples = await scrape(running)
    assert value(samples, finished, workflow=name, status="completed") == 1
    assert value(samples, finished, workflow=name, status="waiting") == 0
