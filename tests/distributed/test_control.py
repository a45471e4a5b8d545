"""Schedules, rate limits, cancel, shutdown and poison executions across worker processes."""

from __future__ import annotations

import signal
import time
from datetime import datetime

import pytest

from tests.distributed.conftest import MakeCluster
from tests.support.dbcheck import query
from tests.support.process import wait_execution
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(240)]


def delay_workflow(name: str, ms: int, **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "steps": [
            {"key": "wait", "type": "delay", "config": {"ms": ms}},
            {"key": "done", "type": "transform", "config": {"output": "ok"}},
        ],
        **extra,
    }


def test_a_schedule_fires_once_per_slot_across_three_workers(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url)
    serve = cluster.start(workers=3)
    with serve.client() as client:
        created = client.post(
            "/api/workflows",
            json=delay_workflow(
                "every-2s", 10, triggers=[{"type": "schedule", "cron": "*/2 * * * * *"}]
            ),
        )
        assert created.status_code == 201, created.text
        trigger_id = created.json()["triggers"][0]["id"]
        window_start = time.time()
        time.sleep(11)
        # Disabling the trigger stops it everywhere.
        disabled = client.put(
            f"/api/triggers/{trigger_id}",
            json={"type": "schedule", "cron": "*/2 * * * * *", "enabled": False},
        )
        assert disabled.status_code == 200, disabled.text
        window_end = time.time()
        time.sleep(4)
    rows = query(
        fresh_pg,
        "SELECT idempotency_key, status, created_at FROM executions WHERE trigger_id = :t",
        t=trigger_id,
    )
    slots = sorted(
        int(datetime.fromisoformat(r["idempotency_key"].split(":", 2)[2]).timestamp()) for r in rows
    )
    assert len(slots) == len(set(slots)), "a slot fired twice"
    # Every even second of the window fired (allow the first and last slot to straddle).
    expected = {s for s in range(int(window_start) + 2, int(window_end) - 1) if s % 2 == 0}
    assert expected <= set(slots), f"missed slots: {sorted(expected - set(slots))}"
    assert max(slots) <= window_end + 1, "the disabled schedule kept firing"
    assert all(r["status"] == "completed" for r in rows)


def test_rate_limits_hold_across_workers(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url)
    serve = cluster.start(workers=3)
    with serve.client() as client:
        client.post("/api/workflows", json=delay_workflow("limited", 300, rateLimitMaxConcurrent=2))
        ids = [
            client.post("/api/workflows/limited/execute", json={}).json()["executionId"]
            for _ in range(10)
        ]
        peak = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            counts = {
                r["status"]: r["n"]
                for r in query(
                    fresh_pg, "SELECT status, count(*) AS n FROM executions GROUP BY status"
                )
            }
            peak = max(peak, counts.get("running", 0))
            if counts.get("completed", 0) == 10:
                break
            time.sleep(0.05)
        assert all(wait_execution(client, i)["status"] == "completed" for i in ids)
        assert peak <= 2

        client.post("/api/workflows", json=delay_workflow("per-minute", 10, rateLimitPerMinute=4))
        more = [
            client.post("/api/workflows/per-minute/execute", json={}).json()["executionId"]
            for _ in range(6)
        ]
        time.sleep(4)
        statuses = [client.get(f"/api/executions/{i}").json()["status"] for i in more]
    assert statuses.count("completed") == 4
    assert statuses.count("pending") == 2


def test_cancel_reaches_the_worker_process_within_a_second(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    # The delay sleeps in the worker (a durable one would park the execution: `waiting`).
    cluster = make_cluster(fresh_pg, redis_server.url, DURABLE_DELAY_MIN_MS="600000")
    serve = cluster.start(workers=2)
    with serve.client() as client:
        client.post("/api/workflows", json=delay_workflow("long", 20_000))
        execution_id = client.post("/api/workflows/long/execute", json={}).json()["executionId"]
        wait_execution(client, execution_id, statuses={"running"}, timeout=20)
        time.sleep(0.3)
        started = time.monotonic()
        assert client.post(f"/api/executions/{execution_id}/cancel").status_code == 202
        body = wait_execution(client, execution_id, timeout=5)
        elapsed = time.monotonic() - started
    assert body["status"] == "cancelled"
    assert elapsed < 1.0, f"cancel took {elapsed:.2f} s"
    assert [s["status"] for s in body["steps"]] == ["failed"]


def test_sigterm_lets_the_running_step_finish_and_exits_0(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url, SHUTDOWN_GRACE_MS="10000")
    serve = cluster.start_serve()
    (workers,) = cluster.start_workers(1)
    with serve.client() as client:
        client.post("/api/workflows", json=delay_workflow("graceful", 1500))
        execution_id = client.post("/api/workflows/graceful/execute", json={}).json()["executionId"]
        wait_execution(client, execution_id, statuses={"running"}, timeout=20)
        workers.signal(signal.SIGTERM)
        assert workers.wait_exit(12) == 0
        body = client.get(f"/api/executions/{execution_id}").json()
    assert body["status"] == "completed"
    assert [s["status"] for s in body["steps"]] == ["completed", "completed"]


def test_sigterm_past_the_grace_period_hands_the_execution_over(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url, SHUTDOWN_GRACE_MS="500", LEASE_MS="2000")
    serve = cluster.start_serve()
    (first,) = cluster.start_workers(1)
    with serve.client() as client:
        client.post("/api/workflows", json=delay_workflow("handover", 4000))
        execution_id = client.post("/api/workflows/handover/execute", json={}).json()["executionId"]
        wait_execution(client, execution_id, statuses={"running"}, timeout=20)
        first.signal(signal.SIGTERM)
        time.sleep(1.5)
        first.kill()  # SIGKILL once the grace period is over
        cluster.start_workers(1)
        body = wait_execution(client, execution_id, timeout=40)
    assert body["status"] == "completed"
    assert any("resumed" in log["message"] for log in body["logs"])


def test_a_poison_execution_fails_after_bounded_deliveries(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(
        fresh_pg,
        redis_server.url,
        MAX_DELIVERIES="3",
        LEASE_MS="1500",
        DURABLE_DELAY_MIN_MS="600000",  # the delay holds its worker (which dies with it)
    )
    serve = cluster.start_serve()
    with serve.client() as client:
        client.post("/api/workflows", json=delay_workflow("poison", 60_000))
        execution_id = client.post("/api/workflows/poison/execute", json={}).json()["executionId"]
        # Every worker that picks it up dies with it (as if the step crashed the process).
        for delivery in (1, 2, 3):
            (workers,) = cluster.start_workers(1)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _deliveries(fresh_pg, execution_id) < delivery:
                time.sleep(0.05)
            assert _deliveries(fresh_pg, execution_id) == delivery
            workers.kill()
        cluster.start_workers(1)
        body = wait_execution(client, execution_id, timeout=30)
    assert body["status"] == "failed"
    assert "interrupted" in (body["error"] or "")


def _deliveries(url: str, execution_id: str) -> int:
    """How many times the execution was claimed (its fencing token)."""
    rows = query(url, "SELECT fencing_token FROM executions WHERE id = :id", id=execution_id)
    return int(rows[0]["fencing_token"])
