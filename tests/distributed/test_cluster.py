"""serve + several `workers` processes on PostgreSQL and Redis: throughput, crashes, stalls."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from datetime import datetime

import httpx
import pytest

from tests.distributed.conftest import MakeCluster
from tests.support.dbcheck import query, status_counts
from tests.support.process import wait_execution
from tests.support.servers import RedisServer
from tests.support.target import Target

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(240)]


def three_steps(target: Target, name: str, slow_ms: int = 0) -> dict[str, object]:
    second = f"{target.url}/slow?ms={slow_ms}" if slow_ms else f"{target.url}/count/{name}-s2"
    return {
        "name": name,
        "steps": [
            {"key": "s1", "type": "http", "config": {"url": f"{target.url}/count/{name}-s1"}},
            {"key": "s2", "type": "http", "config": {"url": second}},
            {
                "key": "s3",
                "type": "transform",
                "config": {
                    "output": {
                        "one": "{{ steps.s1.output.status }}",
                        "two": "{{ steps.s2.output.status }}",
                    }
                },
            },
        ],
    }


async def _trigger(client: httpx.AsyncClient, workflow: str, count: int) -> list[str]:
    semaphore = asyncio.Semaphore(50)

    async def one(n: int) -> str:
        async with semaphore:
            response = await client.post(
                f"/api/workflows/{workflow}/execute", json={"input": {"n": n}}
            )
            assert response.status_code == 202, response.text
            execution_id: str = response.json()["executionId"]
            return execution_id

    return list(await asyncio.gather(*(one(n) for n in range(count))))


def _wait_all_final(url: str, total: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = status_counts(url)
        if sum(counts.get(s, 0) for s in ("completed", "failed", "cancelled")) >= total:
            return counts
        time.sleep(0.5)
    raise AssertionError(f"not all executions finished in {timeout} s: {counts}")


def test_a_thousand_executions_on_three_worker_processes(
    fresh_pg: str, redis_server: RedisServer, target: Target, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url)
    serve = cluster.start(workers=3)
    with serve.client() as client:
        assert client.post("/api/workflows", json=three_steps(target, "bulk")).status_code == 201

    async def trigger() -> list[str]:
        async with serve.async_client() as client:
            return await _trigger(client, "bulk", 1000)

    ids = asyncio.run(trigger())
    assert len(set(ids)) == 1000
    counts = _wait_all_final(fresh_pg, 1000, timeout=180)
    assert counts == {"completed": 1000}
    steps = query(fresh_pg, "SELECT execution_id, step_key, status FROM execution_steps")
    assert len(steps) == 3000
    assert Counter((s["execution_id"], s["step_key"]) for s in steps).most_common(1)[0][1] == 1
    assert {s["status"] for s in steps} == {"completed"}
    # Each http step reached the target exactly once per execution.
    for key in ("count/bulk-s1", "count/bulk-s2"):
        keys = [hit.idempotency_key for hit in target.hits(key)]
        assert len(keys) == 1000 and len(set(keys)) == 1000


def test_kill_9_of_a_worker_during_step_2(
    fresh_pg: str, redis_server: RedisServer, target: Target, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url)
    serve = cluster.start_serve()
    workers = cluster.start_workers(2)
    with serve.client() as client:
        client.post("/api/workflows", json=three_steps(target, "crash", slow_ms=2500))
        ids = [
            client.post("/api/workflows/crash/execute", json={}).json()["executionId"]
            for _ in range(4)
        ]
        # Wait until step 2 runs, then kill -9 the worker process that runs it.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not target.hits("slow"):
            time.sleep(0.05)
        in_step_2 = query(
            fresh_pg,
            "SELECT e.id, e.lease_owner FROM executions e JOIN execution_steps s"
            " ON s.execution_id = e.id AND s.step_key = 's2' AND s.status = 'running'"
            " WHERE e.status = 'running'",
        )
        owner = in_step_2[0]["lease_owner"]
        victim = next(w for w in workers if owner.endswith(f":{w.proc.pid}"))
        victims = {row["id"] for row in in_step_2 if row["lease_owner"] == owner}
        victim.kill()
        bodies = [wait_execution(client, i, timeout=60) for i in ids]
    assert [b["status"] for b in bodies] == ["completed"] * 4, cluster.logs()
    s1_hits = target.hits("count/crash-s1")
    # A completed step is never run again: no call of step 1 after it completed...
    for body in bodies:
        done_at = datetime.fromisoformat(body["steps"][0]["completedAt"]).timestamp()
        late = [h for h in s1_hits if h.idempotency_key == f"{body['id']}:s1" and h.at > done_at]
        assert late == [], f"step 1 of {body['id']} ran again after it completed"
    # ...and the executions killed in step 2 called step 1 exactly once.
    s1_keys = Counter(hit.idempotency_key for hit in s1_hits)
    assert victims and all(s1_keys[f"{i}:s1"] == 1 for i in victims)
    # Every try of step 2 carried the same key; the killed ones were tried again.
    slow_keys = Counter(hit.idempotency_key for hit in target.hits("slow"))
    assert set(slow_keys) == {f"{i}:s2" for i in ids}
    assert all(slow_keys[f"{i}:s2"] >= 2 for i in victims)
    rows = query(fresh_pg, "SELECT count(*) AS n FROM execution_steps WHERE status = 'completed'")
    assert rows[0]["n"] == 12


def test_a_stalled_worker_cannot_write_after_losing_its_lease(
    fresh_pg: str, redis_server: RedisServer, target: Target, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url, LEASE_MS="2000")
    serve = cluster.start_serve()
    (stalled,) = cluster.start_workers(1)
    with serve.client() as client:
        client.post("/api/workflows", json=three_steps(target, "stall", slow_ms=1500))
        execution_id = client.post("/api/workflows/stall/execute", json={}).json()["executionId"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not target.hits("slow"):
            time.sleep(0.05)
        stalled.signal(signal.SIGSTOP)
        (other,) = cluster.start_workers(1)
        body = wait_execution(client, execution_id, timeout=60)
        assert body["status"] == "completed"
        stalled.signal(signal.SIGCONT)  # wakes up, finishes its HTTP call, tries to write
        time.sleep(4)
        after = client.get(f"/api/executions/{execution_id}").json()
    assert after["status"] == "completed"
    assert after["completedAt"] == body["completedAt"], "a second final result was written"
    assert [s["status"] for s in after["steps"]] == ["completed"] * 3
    finals = [log for log in after["logs"] if log["message"].startswith("Execution completed")]
    assert len(finals) == 1
    assert "lease lost" in (cluster.workers[0].logs()).lower()
    assert other.proc.poll() is None
