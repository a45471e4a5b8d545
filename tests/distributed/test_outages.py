"""Redis and PostgreSQL going away under a running deployment: nothing is lost."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.distributed.conftest import MakeCluster
from tests.support.databases import admin_sql
from tests.support.dbcheck import query, status_counts
from tests.support.servers import PostgresServer, RedisServer

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(240)]

WORKFLOW = {
    "name": "steady",
    "steps": [
        {"key": "a", "type": "transform", "config": {"output": "{{ input.n }}"}},
        {"key": "b", "type": "delay", "config": {"ms": 50}},
        {"key": "c", "type": "transform", "config": {"output": "{{ steps.a.output }}"}},
    ],
}


def _trigger(serve_client: object, count: int) -> list[str]:
    ids = []
    for n in range(count):
        response = serve_client.post(  # type: ignore[attr-defined]
            "/api/workflows/steady/execute", json={"input": {"n": n}}
        )
        assert response.status_code == 202, response.text
        ids.append(response.json()["executionId"])
    return ids


def _wait_completed(url: str, total: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = status_counts(url)
        if counts.get("completed", 0) >= total:
            return counts
        time.sleep(0.5)
    raise AssertionError(f"only {counts} after {timeout} s")


def _one_row_per_step(url: str, executions: int) -> None:
    rows = query(
        url,
        "SELECT count(*) AS n, count(DISTINCT execution_id || step_key) AS d FROM execution_steps",
    )
    assert rows[0]["n"] == rows[0]["d"] == executions * 3


def test_redis_restart_without_saving_loses_nothing(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url)
    serve = cluster.start_serve()
    with serve.client() as client:
        assert client.post("/api/workflows", json=WORKFLOW).status_code == 201
        ids = _trigger(client, 30)  # queued while no worker runs
    redis_server.stop()  # every queued job is gone
    redis_server.start()
    cluster.start_workers(2)
    counts = _wait_completed(fresh_pg, len(ids), timeout=90)
    assert counts == {"completed": 30}
    _one_row_per_step(fresh_pg, 30)


def test_redis_restart_under_load(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url)
    serve = cluster.start(workers=2)
    with serve.client() as client:
        client.post("/api/workflows", json=WORKFLOW)
        ids = _trigger(client, 60)
        redis_server.stop()
        time.sleep(2)
        redis_server.start()
        ids += _trigger(client, 20)  # accepted again once Redis is back
    counts = _wait_completed(fresh_pg, len(ids), timeout=120)
    assert counts == {"completed": 80}
    _one_row_per_step(fresh_pg, 80)


def test_postgres_down_for_ten_seconds_under_load(
    redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    pg = PostgresServer().start()
    try:
        admin_sql('CREATE DATABASE "engine"', url=pg.url)
        url = pg.url.rsplit("/", 1)[0] + "/engine"
        cluster = make_cluster(url, redis_server.url)
        serve = cluster.start(workers=2)
        with serve.client() as client:
            client.post("/api/workflows", json=WORKFLOW)
            ids = _trigger(client, 60)
        time.sleep(0.5)
        pg.stop()
        time.sleep(10)
        pg.start()
        counts = _wait_completed(url, len(ids), timeout=120)
        assert counts == {"completed": 60}, cluster.logs()
        _one_row_per_step(url, 60)
        cluster.stop()
    finally:
        pg.remove()


def test_workers_print_the_seed_lines_and_queue_counts_agree(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url)
    serve = cluster.start_serve()
    (workers,) = cluster.start_workers(1)
    assert workers.stdout().splitlines()[:5] == [
        "[Workflow Engine] Starting workers...",
        "[Dispatcher] Worker started",
        "[Executor] Worker started with concurrency 5",
        "[Workflow Engine] Registering schedule triggers...",
        "[Workflow Engine] All systems ready",
    ]
    workers.signal(signal.SIGTERM)
    assert workers.wait_exit(20) == 0
    with serve.client() as client:
        client.post("/api/workflows", json=WORKFLOW)
        _trigger(client, 7)
        port = redis_server.port
        llen = subprocess.run(
            ["redis-cli", "-p", str(port), "LLEN", "bull:workflow-dispatch:wait"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        queues = client.get("/api/queues").json()["queues"]
    assert llen == "7"
    assert queues["workflow-dispatch"]["waiting"] == 7


def test_executions_are_accepted_while_redis_is_down(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url)
    serve = cluster.start(workers=1)
    with serve.client() as client:
        client.post("/api/workflows", json=WORKFLOW)
        redis_server.stop()
        started = time.monotonic()
        response = client.post("/api/workflows/steady/execute", json={"input": {"n": 1}})
        assert response.status_code == 202, response.text
        assert time.monotonic() - started < 5
        redis_server.start()
    counts = _wait_completed(fresh_pg, 1, timeout=60)
    assert counts == {"completed": 1}
