"""Retention in the distributed mode: one `workers` process (the leader) removes the old
executions; `serve` and the other workers do not."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.distributed.conftest import MakeCluster
from tests.support.databases import run_sync
from tests.support.dbcheck import query
from tests.support.history import insert_history
from tests.support.process import wait_execution
from tests.support.servers import RedisServer
from workflow_engine.storage.db import Database

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(180)]

ONE = {"name": "one", "steps": [{"key": "only", "type": "transform", "config": {"output": 1}}]}


def test_one_workers_process_removes_old_executions(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(
        fresh_pg,
        redis_server.url,
        EXECUTION_RETENTION_DAYS="1",
        RETENTION_INTERVAL_MS="300",
        RETENTION_BATCH_SIZE="100",
    )
    serve = cluster.start(workers=2)
    with serve.client() as client:
        made = client.post("/api/workflows", json=ONE).json()
        new_id = client.post("/api/workflows/one/execute", json={}).json()["executionId"]
        assert wait_execution(client, new_id)["status"] == "completed"
    [step] = query(
        fresh_pg, "SELECT step_id FROM execution_steps WHERE execution_id = :i", i=new_id
    )

    async def seed() -> None:
        db = Database(fresh_pg)
        try:
            async with db.write() as conn:
                await insert_history(
                    conn,
                    workflow_id=made["id"],
                    version_id=made["activeVersionId"],
                    step_id=step["step_id"],
                    count=2_000,
                    finished_at=datetime.now(UTC) - timedelta(days=2),
                )
        finally:
            await db.dispose()

    run_sync(seed())
    old = "SELECT count(*) AS n FROM executions WHERE id LIKE 'old-%'"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and query(fresh_pg, old)[0]["n"]:
        time.sleep(0.2)
    assert query(fresh_pg, old)[0]["n"] == 0
    events = "SELECT count(*) AS n FROM execution_events WHERE execution_id LIKE 'old-%'"
    assert query(fresh_pg, events)[0]["n"] == 0
    assert query(fresh_pg, "SELECT id, status FROM executions") == [
        {"id": new_id, "status": "completed"}
    ]
    removed = {
        process.name: [line for line in process.stdout().splitlines() if "[Retention]" in line]
        for process in [*cluster.workers, serve]
    }
    by = [name for name, lines in removed.items() if lines]
    assert len(by) == 1 and by[0].startswith("workers"), removed
    total = sum(int(line.split("Removed ")[1].split()[0]) for line in removed[by[0]])
    assert total == 2_000
