"""What a `workers` process prints while executions fail and complete: the seed's lines and the
executions' own outcomes, never a traceback of the engine's."""

from __future__ import annotations

import pytest

from tests.distributed.conftest import MakeCluster
from tests.support.process import wait_execution
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(120)]


def test_failing_and_completing_executions_leave_no_traceback_in_the_workers_log(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url)
    serve = cluster.start(workers=1)
    with serve.client() as client:
        ids = []
        for name, step in (
            ("fails", {"key": "boom", "type": "fail", "config": {"message": "on purpose"}}),
            ("works", {"key": "ok", "type": "transform", "config": {"output": 1}}),
        ):
            created = client.post("/api/workflows", json={"name": name, "steps": [step]})
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
        started = [
            client.post(f"/api/workflows/{ids[n % 2]}/execute", json={}).json()["executionId"]
            for n in range(20)
        ]
        finals = [wait_execution(client, e, timeout=60)["status"] for e in started]
    assert finals == ["failed", "completed"] * 10
    cluster.stop()
    log = cluster.logs()
    assert "Traceback" not in log, log[-4000:]
    assert "TypeError" not in log, log[-4000:]
