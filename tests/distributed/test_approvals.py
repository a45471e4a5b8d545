"""Approval steps across processes (PostgreSQL + Redis/BullMQ): `serve` takes the decision,
a `workers` process resumes the execution; the wait survives kill -9 of the workers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.distributed.conftest import MakeCluster
from tests.distributed.test_waits import create, execute, waiting
from tests.support.dbcheck import query
from tests.support.process import wait_execution
from tests.support.servers import RedisServer
from tests.support.target import Target

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(180)]
FAST = {"DURABLE_DELAY_MIN_MS": "500", "RECONCILE_INTERVAL_MS": "500"}


def review_workflow(target: Target) -> dict[str, Any]:
    return {
        "name": "review",
        "steps": [
            {"key": "before", "type": "http", "config": {"url": f"{target.url}/count/before"}},
            {
                "key": "review",
                "type": "approval",
                "config": {"message": "Ship order {{ input.id }}?", "timeoutMs": 600_000},
            },
            {"key": "after", "type": "http", "config": {"url": f"{target.url}/count/after"}},
        ],
    }


def decide(client: httpx.Client, execution_id: str, verb: str, comment: str) -> httpx.Response:
    return client.post(
        f"/api/executions/{execution_id}/steps/review/{verb}", json={"comment": comment}
    )


def test_serve_decides_and_workers_resume_once(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster, target: Target
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url, **FAST)
    serve = cluster.start(workers=1)
    with serve.client() as client:
        create(client, review_workflow(target))
        made = client.post("/api/keys", json={"name": "ops-key", "role": "operator"})
        assert made.status_code == 201, made.text
        operator = made.json()["key"]
        first = execute(client, "review", {"id": 1})
        second = execute(client, "review", {"id": 2})
        body = waiting(client, first)
        assert body["waits"][0]["approval"]["message"] == "Ship order 1?"
        waiting(client, second)
    # The workers die (kill -9) while both wait; others start. Nothing was held: the decisions
    # made through `serve` are resumed by the new workers.
    for process in cluster.workers:
        process.kill()
        process.stop()
    cluster.workers = []
    cluster.start_workers(1)
    with serve.client(token=operator) as client:
        approved = decide(client, first, "approve", "ship it")
        assert approved.status_code == 200, approved.text
        assert approved.json()["by"] == "ops-key"
        # Five decisions at once on the other: exactly one is taken.
        with ThreadPoolExecutor(max_workers=5) as pool:
            answers = list(pool.map(lambda n: decide(client, second, "approve", f"n{n}"), range(5)))
        assert sorted(a.status_code for a in answers) == [200, 409, 409, 409, 409]
        bodies = [wait_execution(client, e, timeout=30) for e in (first, second)]
    assert [b["status"] for b in bodies] == ["completed", "completed"], bodies
    review = {s["stepKey"]: s for s in bodies[0]["steps"]}["review"]
    assert review["output"]["approved"] is True and review["output"]["comment"] == "ship it"
    assert review["output"]["by"] == "ops-key"
    assert len(target.hits("count/before")) == 2 and len(target.hits("count/after")) == 2
    resumed = query(
        fresh_pg,
        "SELECT execution_id, count(*) AS n FROM execution_events WHERE type = 'resumed' "
        "GROUP BY execution_id",
    )
    assert sorted(r["n"] for r in resumed) == [1, 1]
    decisions = query(
        fresh_pg,
        "SELECT actor, action FROM audit_log WHERE target_type = 'execution' ORDER BY at",
    )
    assert decisions == [{"actor": "ops-key", "action": "step.approved"}] * 2
