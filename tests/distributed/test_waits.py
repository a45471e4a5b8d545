"""Durable waits across processes (PostgreSQL + Redis/BullMQ): timers as delayed jobs and rows,
events, and kill -9 of every process while executions wait."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.distributed.conftest import MakeCluster
from tests.support.dbcheck import query
from tests.support.process import wait_execution
from tests.support.servers import RedisServer
from tests.support.target import Target

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(180)]
FAST = {"DURABLE_DELAY_MIN_MS": "500", "RECONCILE_INTERVAL_MS": "500"}


def create(client: httpx.Client, document: dict[str, Any]) -> None:
    response = client.post("/api/workflows", json=document)
    assert response.status_code == 201, response.text


def execute(client: httpx.Client, name: str, input: Any = None) -> str:
    response = client.post(f"/api/workflows/{name}/execute", json={"input": input or {}})
    assert response.status_code == 202, response.text
    execution_id: str = response.json()["executionId"]
    return execution_id


def post_event(client: httpx.Client, name: str, key: str, data: Any = None) -> dict[str, Any]:
    response = client.post("/api/events", json={"name": name, "key": key, "data": data})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def waiting(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    return wait_execution(client, execution_id, timeout=30, statuses={"waiting"})


def nap_workflow(name: str, target: Target, ms: int) -> dict[str, Any]:
    return {
        "name": name,
        "steps": [
            {"key": "before", "type": "http", "config": {"url": f"{target.url}/count/{name}"}},
            {"key": "sleep", "type": "delay", "config": {"ms": ms}},
            {"key": "after", "type": "http", "config": {"url": f"{target.url}/count/{name}-b"}},
        ],
    }


def test_a_long_delay_frees_the_worker_and_its_timer_fires(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster, target: Target
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url, EXECUTION_CONCURRENCY="1", **FAST)
    serve = cluster.start(workers=1)
    with serve.client() as client:
        create(client, nap_workflow("nap", target, 4_000))
        create(
            client,
            {
                "name": "quick",
                "steps": [{"key": "q", "type": "transform", "config": {"output": 1}}],
            },
        )
        execution_id = execute(client, "nap")
        body = waiting(client, execution_id)
        assert body["wakeAt"] is not None and body["waits"][0]["type"] == "delay"
        [row] = query(
            fresh_pg,
            "SELECT lease_owner, lease_expires_at FROM executions WHERE id = :id",
            id=execution_id,
        )
        assert row == {"lease_owner": None, "lease_expires_at": None}
        # The one worker slot is free meanwhile.
        quick = wait_execution(client, execute(client, "quick"), timeout=10)
        assert quick["status"] == "completed"
        assert client.get(f"/api/executions/{execution_id}").json()["status"] == "waiting"
        body = wait_execution(client, execution_id, timeout=30)
    assert body["status"] == "completed", body
    steps = {s["stepKey"]: s for s in body["steps"]}
    assert steps["sleep"]["output"] == {"delayedMs": 4_000}
    assert len(target.hits("count/nap")) == 1 and len(target.hits("count/nap-b")) == 1


def test_kill_9_of_everything_while_executions_wait_then_restart(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster, target: Target
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url, **FAST)
    serve = cluster.start(workers=2)
    order = {
        "name": "order",
        "steps": [
            {"key": "before", "type": "http", "config": {"url": f"{target.url}/count/order"}},
            {
                "key": "paid",
                "type": "wait",
                "config": {"event": "order.paid", "key": "{{ input.id }}"},
            },
        ],
    }
    with serve.client() as client:
        create(client, nap_workflow("nap", target, 3_000))
        create(client, order)
        naps = [execute(client, "nap") for _ in range(3)]
        orders = [execute(client, "order", {"id": str(n)}) for n in range(3)]
        for execution_id in naps + orders:
            waiting(client, execution_id)
    for process in [*cluster.workers, serve]:
        process.kill()
        process.stop()  # closes its output files; it is dead already
    time.sleep(3.5)  # the naps' timers come due while nothing runs
    cluster.workers = []
    serve = cluster.start(workers=2)
    with serve.client() as client:
        for n, _ in enumerate(orders):
            assert post_event(client, "order.paid", str(n), {"n": n})["matched"] == 1
        bodies = [wait_execution(client, e, timeout=30) for e in naps + orders]
    assert [b["status"] for b in bodies] == ["completed"] * 6, bodies
    assert [b["output"] for b in bodies[3:]] == [{"n": 0}, {"n": 1}, {"n": 2}]
    # The steps before the wait ran once each; the ones after, once each.
    assert len(target.hits("count/nap")) == 3 and len(target.hits("count/nap-b")) == 3
    assert len(target.hits("count/order")) == 3
    resumed = query(
        fresh_pg,
        "SELECT execution_id, count(*) AS n FROM execution_events WHERE type = 'resumed' "
        "GROUP BY execution_id",
    )
    assert sorted(r["n"] for r in resumed) == [1] * 6


def test_events_early_twice_at_once_and_timeouts(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster, target: Target
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url, **FAST)
    serve = cluster.start(workers=2)

    def order(name: str, **config: Any) -> dict[str, Any]:
        return {
            "name": name,
            "steps": [
                {
                    "key": "paid",
                    "type": "wait",
                    "config": {"event": "order.paid", "key": "{{ input.id }}", **config},
                },
                {"key": "after", "type": "http", "config": {"url": f"{target.url}/count/{name}"}},
            ],
        }

    with serve.client() as client:
        create(client, order("order"))
        create(client, order("strict", timeoutMs=1_000))
        create(client, order("lenient", timeoutMs=1_000, onTimeout="continue"))
        # Early: posted before the wait registers.
        assert post_event(client, "order.paid", "early", {"early": True})["matched"] == 0
        early = wait_execution(client, execute(client, "order", {"id": "early"}), timeout=30)
        assert early["status"] == "completed" and early["output"]["status"] == 200
        assert {s["stepKey"]: s["output"] for s in early["steps"]}["paid"] == {"early": True}
        # Twice at once: one resume.
        execution_id = execute(client, "order", {"id": "twice"})
        waiting(client, execution_id)
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(lambda n: post_event(client, "order.paid", "twice", {"n": n}), range(4))
            )
        assert sorted(a["matched"] for a in answers) == [0, 0, 0, 1]
        assert wait_execution(client, execution_id, timeout=30)["status"] == "completed"
        strict = wait_execution(client, execute(client, "strict", {"id": "never"}), timeout=30)
        lenient = wait_execution(client, execute(client, "lenient", {"id": "never"}), timeout=30)
    assert strict["status"] == "failed" and "Timed out after 1000 ms" in strict["error"]
    assert lenient["status"] == "completed"
    assert {s["stepKey"]: s["output"] for s in lenient["steps"]}["paid"] is None
    assert len(target.hits("count/order")) == 2
    assert target.hits("count/strict") == [] and len(target.hits("count/lenient")) == 1


def test_cancel_while_waiting_across_processes(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster, target: Target
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url, **FAST)
    serve = cluster.start(workers=1)
    with serve.client() as client:
        create(client, nap_workflow("nap", target, 60_000))
        execution_id = execute(client, "nap")
        waiting(client, execution_id)
        response = client.post(f"/api/executions/{execution_id}/cancel")
        assert response.status_code == 202 and response.json()["status"] == "cancelled"
        body = wait_execution(client, execution_id, timeout=5)
    assert body["status"] == "cancelled"
    assert [s["status"] for s in body["steps"]] == ["completed", "failed"]
    assert query(fresh_pg, "SELECT * FROM execution_waits") == []
