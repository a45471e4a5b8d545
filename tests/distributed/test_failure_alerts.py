"""Failure alerts across `serve` and `workers` processes: once per failed execution, even when
the worker running it is killed on the way."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.distributed.conftest import MakeCluster
from tests.support.dbcheck import query
from tests.support.process import wait_execution
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(180)]

SINK = {
    "name": "alert-sink",
    "steps": [{"key": "got", "type": "transform", "config": {"output": "{{ input }}"}}],
}


def failing(name: str, wait_ms: int) -> dict[str, Any]:
    return {
        "name": name,
        "onFailure": "alert-sink",
        "retryMaxAttempts": 1,
        "steps": [
            {"key": "wait", "type": "delay", "config": {"ms": wait_ms}},
            {"key": "boom", "type": "fail", "config": {"message": "declined"}},
        ],
    }


def alerts(client: httpx.Client, sink_id: str, expected: int) -> list[dict[str, Any]]:
    """The sink's executions once there are `expected` of them, all finished (waits a little
    more, so a second alert would show)."""
    deadline = time.monotonic() + 30
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = client.get("/api/executions", params={"workflowId": sink_id}).json()["executions"]
        if len(found) >= expected and all(e["status"] == "completed" for e in found):
            break
        time.sleep(0.1)
    time.sleep(1.5)
    after: list[dict[str, Any]] = client.get(
        "/api/executions", params={"workflowId": sink_id}
    ).json()["executions"]
    return after


def test_a_failed_execution_alerts_once_and_a_completed_one_not(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url)
    serve = cluster.start(workers=2)
    with serve.client() as client:
        sink = client.post("/api/workflows", json=SINK).json()
        created = client.post("/api/workflows", json=failing("flaky", 10))
        assert created.status_code == 201, created.text
        fine = {**SINK, "name": "fine", "onFailure": "alert-sink"}
        assert client.post("/api/workflows", json=fine).status_code == 201
        refused = client.post("/api/workflows", json={**fine, "name": "x", "onFailure": "nope"})
        assert refused.status_code == 422, refused.text

        ok_id = client.post("/api/workflows/fine/execute", json={}).json()["executionId"]
        failed_id = client.post("/api/workflows/flaky/execute", json={}).json()["executionId"]
        assert wait_execution(client, ok_id)["status"] == "completed"
        failed = wait_execution(client, failed_id)
        assert failed["status"] == "failed"
        [alert] = alerts(client, sink["id"], 1)
        body = client.get(f"/api/executions/{alert['id']}").json()
    boom = next(s for s in failed["steps"] if s["stepKey"] == "boom")
    assert body["input"] == {
        "executionId": failed_id,
        "workflowId": created.json()["id"],
        "workflowName": "flaky",
        "error": "Step 'boom' failed: declined",
        "failedStep": {"stepId": boom["stepId"], "stepKey": "boom", "error": "declined"},
    }
    assert body["output"] == body["input"]


def test_the_alert_starts_once_when_the_worker_is_killed_during_the_execution(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url, LEASE_MS="1500")
    serve = cluster.start_serve()
    (first,) = cluster.start_workers(1)
    with serve.client() as client:
        sink = client.post("/api/workflows", json=SINK).json()
        assert client.post("/api/workflows", json=failing("slow-fail", 2000)).status_code == 201
        ids = [
            client.post("/api/workflows/slow-fail/execute", json={}).json()["executionId"]
            for _ in range(3)
        ]
        for execution_id in ids:
            wait_execution(client, execution_id, statuses={"running"}, timeout=20)
        first.kill()  # kill -9 while every execution waits in its delay step
        cluster.start_workers(2)
        for execution_id in ids:
            body = wait_execution(client, execution_id, timeout=60)
            assert body["status"] == "failed"
            assert any("resumed" in line["message"] for line in body["logs"])
        found = alerts(client, sink["id"], 3)
    assert sorted(e["input"]["executionId"] for e in found) == sorted(ids)
    keys = query(
        fresh_pg, "SELECT idempotency_key FROM executions WHERE workflow_id = :w", w=sink["id"]
    )
    assert sorted(row["idempotency_key"] for row in keys) == sorted(f"onFailure:{i}" for i in ids)
