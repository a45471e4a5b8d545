"""Graphs on serve + `workers` processes (PostgreSQL, Redis): a fan-out whose worker is killed
with -9, a map, and sub-workflows (output, cancel cascade)."""

from __future__ import annotations

import uuid

import pytest

from tests.distributed.conftest import MakeCluster
from tests.support.dbcheck import query
from tests.support.flows import parse_time
from tests.support.graphs import fan_out, wait_for
from tests.support.process import wait_execution
from tests.support.servers import RedisServer
from tests.support.target import Target

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(180)]


def test_kill_9_of_the_worker_running_a_fan_out(
    fresh_pg: str, redis_server: RedisServer, target: Target, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url)
    serve = cluster.start_serve()
    workers = cluster.start_workers(2)
    name = f"fan-{uuid.uuid4().hex[:6]}"
    with serve.client() as client:
        document = fan_out(target, name, fast=3, slow=3, slow_ms=3000)
        assert client.post("/api/workflows", json=document).status_code == 201
        execution_id = client.post(f"/api/workflows/{name}/execute", json={}).json()["executionId"]

        def ready_to_kill() -> bool:
            rows = query(
                fresh_pg,
                "SELECT step_key, status FROM execution_steps WHERE execution_id = :id",
                id=execution_id,
            )
            status = {row["step_key"]: row["status"] for row in rows}
            fast_done = all(status.get(f"fast{i}") == "completed" for i in range(3))
            slow_running = all(target.hits(f"slowcount/{name}-s{i}") for i in range(3))
            return fast_done and slow_running

        wait_for(ready_to_kill, "the fast branches to finish and the slow ones to run")
        (owner,) = query(
            fresh_pg, "SELECT lease_owner FROM executions WHERE id = :id", id=execution_id
        )
        victim = next(w for w in workers if owner["lease_owner"].endswith(f":{w.proc.pid}"))
        victim.kill()
        body = wait_execution(client, execution_id, timeout=90)
    assert body["status"] == "completed", cluster.logs()
    for i in range(3):
        assert len(target.hits(f"count/{name}-f{i}")) == 1
        keys = [h.idempotency_key for h in target.hits(f"slowcount/{name}-s{i}")]
        assert len(keys) >= 2 and set(keys) == {f"{execution_id}:slow{i}"}
    assert len(target.hits(f"count/{name}-join")) == 1


def test_map_and_sub_workflows_on_workers(
    fresh_pg: str, redis_server: RedisServer, target: Target, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url)
    serve = cluster.start(workers=2)
    child = {
        "name": "child",
        "steps": [
            {
                "key": "call",
                "type": "http",
                "config": {"url": f"{target.url}/count/child-{{{{ input.n }}}}"},
            },
            {"key": "out", "type": "transform", "config": {"output": "{{ input.n * 10 }}"}},
        ],
    }
    parent = {
        "name": "parent",
        "steps": [
            {
                "key": "each",
                "type": "map",
                "config": {
                    "items": "{{ input.ns }}",
                    "parallelism": 4,
                    "step": {
                        "type": "workflow",
                        "config": {"workflow": "child", "input": {"n": "{{ item }}"}},
                    },
                },
            }
        ],
    }
    with serve.client() as client:
        assert client.post("/api/workflows", json=child).status_code == 201
        assert client.post("/api/workflows", json=parent).status_code == 201
        response = client.post(
            "/api/workflows/parent/execute", json={"input": {"ns": list(range(12))}}
        )
        execution_id = response.json()["executionId"]
        body = wait_execution(client, execution_id, timeout=90)
    assert body["status"] == "completed", cluster.logs()
    assert body["output"] == [n * 10 for n in range(12)]
    assert len(body["children"]) == 12
    assert {c["parentStepKey"] for c in body["children"]} == {f"each[{n}]" for n in range(12)}
    assert all(c["status"] == "completed" for c in body["children"])
    for n in range(12):
        assert len(target.hits(f"count/child-{n}")) == 1


def test_cancelling_a_parent_cancels_its_child_on_workers(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    # The child's delay sleeps in its worker (a durable one would park it: `waiting`).
    cluster = make_cluster(fresh_pg, redis_server.url, DURABLE_DELAY_MIN_MS="600000")
    serve = cluster.start(workers=2)
    with serve.client() as client:
        client.post(
            "/api/workflows",
            json={
                "name": "sleepy",
                "steps": [{"key": "z", "type": "delay", "config": {"ms": 60_000}}],
            },
        )
        client.post(
            "/api/workflows",
            json={
                "name": "boss",
                "steps": [{"key": "sub", "type": "workflow", "config": {"workflow": "sleepy"}}],
            },
        )
        parent_id = client.post("/api/workflows/boss/execute", json={}).json()["executionId"]

        def running_child() -> str | None:
            children = client.get(f"/api/executions/{parent_id}").json()["children"]
            return children[0]["id"] if children and children[0]["status"] == "running" else None

        child_id = wait_for(running_child, "the child to run")
        assert client.post(f"/api/executions/{parent_id}/cancel").status_code == 202
        parent = wait_execution(client, parent_id, timeout=20)
        child = wait_execution(client, child_id, timeout=20)
    assert parent["status"] == "cancelled"
    assert child["status"] == "cancelled"


def test_a_fan_out_of_ten_delays_runs_at_once_on_workers(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url)
    serve = cluster.start(workers=1)
    branches = [
        {"key": f"b{i}", "type": "delay", "needs": [], "config": {"ms": 1000}} for i in range(10)
    ]
    join = {"key": "join", "type": "transform", "needs": [b["key"] for b in branches]}
    with serve.client() as client:
        document = {"name": "ten", "steps": [*branches, {**join, "config": {"output": "joined"}}]}
        assert client.post("/api/workflows", json=document).status_code == 201
        execution_id = client.post("/api/workflows/ten/execute", json={}).json()["executionId"]
        body = wait_execution(client, execution_id, timeout=60)
    assert body["status"] == "completed", cluster.logs()
    steps = {s["stepKey"]: s for s in body["steps"]}
    first_done = min(parse_time(steps[f"b{i}"]["completedAt"]) for i in range(10))
    assert all(parse_time(steps[f"b{i}"]["startedAt"]) < first_done for i in range(10))
    last_done = max(parse_time(steps[f"b{i}"]["completedAt"]) for i in range(10))
    assert parse_time(steps["join"]["startedAt"]) >= last_done
    assert [s["stepKey"] for s in body["steps"]].count("join") == 1
    assert body["output"] == "joined"
