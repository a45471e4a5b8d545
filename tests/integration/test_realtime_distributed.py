"""Distributed mode: an execution run by a separate `workflow-engine workers` process reaches a
socket.io client connected to `serve` (events go workers -> Redis channel -> serve -> client).
Real PostgreSQL (a database of this test's own) and a private real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import Cluster
from tests.support.databases import fresh_database
from tests.support.realtime import socket_client
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.timeout(120)]

WORKFLOW = {
    "name": "distributed-live",
    "steps": [
        {"key": "one", "type": "transform", "config": {"output": {"n": 1}}},
        {"key": "wait", "type": "delay", "config": {"ms": 700}},
        {"key": "two", "type": "transform", "config": {"output": {"n": 2}}},
    ],
}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with fresh_database("we_rt") as database_url:
        redis = RedisServer().start()
        deployment = Cluster(tmp_path, database_url=database_url, redis_url=redis.url)
        try:
            deployment.start_serve()
            deployment.start_workers(1)
            yield deployment
        finally:
            deployment.stop()
            redis.stop()


async def test_events_from_a_workers_process_reach_a_client_of_serve(cluster: Cluster) -> None:
    serve = cluster.serve
    assert serve is not None
    auth = {"token": serve.token}
    async with (
        serve.async_client() as api,
        socket_client(serve.url, auth=auth) as follower,
        socket_client(serve.url, auth=auth) as monitor,
    ):
        assert (await api.post("/api/workflows", json=WORKFLOW)).status_code == 201
        # Rooms are live only: what `monitor` gets can only have come over Redis, as it ran.
        assert (await monitor.call("subscribe_all"))["ok"]
        response = await api.post("/api/workflows/distributed-live/execute", json={"input": {}})
        assert response.status_code == 202, response.text
        execution_id = response.json()["executionId"]
        assert (await follower.call("subscribe", execution_id))["ok"]
        await follower.wait_final(execution_id, timeout=30)
        await monitor.wait_final(execution_id, timeout=30)
        expected = ["started", *["step_started", "step_completed"] * 3, "completed"]
        assert follower.names(execution_id) == expected
        assert monitor.names(execution_id) == ["started", "completed"]
        seqs = [p["seq"] for _, p in follower.of(execution_id)]
        assert seqs == list(range(1, len(seqs) + 1))
        assert all(p["timestamp"].endswith("Z") for _, p in follower.of(execution_id))
    # serve did not run it: only the workers process claimed executions.
    assert "Executor] Worker started" not in serve.stdout()
    assert "Executor] Worker started" in cluster.workers[0].stdout()
