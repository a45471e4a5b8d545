"""Retention: finished executions older than the cutoff go with their steps, logs and events;
recent, pending and running ones (and trees or re-runs still live) stay. By hand (`workflow-engine
prune`), in the background (EXECUTION_RETENTION_DAYS), and at 100,000 rows while work runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from tests.conftest import Running, StartEngine
from tests.support.flows import eventually, scalar, sql, start
from tests.support.history import insert_history
from tests.support.process import run_cli
from workflow_engine.engine.retention import prune
from workflow_engine.storage.executions import NewExecution, execution_row
from workflow_engine.storage.tables import executions

pytestmark = pytest.mark.timeout(120)

HOUR = 3_600_000
ONE = {"name": "one", "steps": [{"key": "only", "type": "transform", "config": {"output": 1}}]}
WORKFLOWS: list[dict[str, Any]] = [
    ONE,
    {
        "name": "boom",
        "retryMaxAttempts": 1,
        "steps": [{"key": "no", "type": "fail", "config": {"message": "no"}}],
    },
    {"name": "slow", "steps": [{"key": "wait", "type": "delay", "config": {"ms": 30_000}}]},
    {
        "name": "parent",
        "steps": [{"key": "child", "type": "workflow", "config": {"workflow": "one"}}],
    },
]


def days_ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


async def rows_of(running: Running, ids: list[str]) -> dict[str, tuple[int, int, int, int]]:
    """(execution, steps, logs, events) rows per execution id."""
    per_table = []
    for table, column in (
        ("executions", "id"),
        ("execution_steps", "execution_id"),
        ("execution_logs", "execution_id"),
        ("execution_events", "execution_id"),
    ):
        query = f"SELECT {column} AS id, count(*) AS n FROM {table} GROUP BY {column}"
        per_table.append({row["id"]: int(row["n"]) for row in await sql(running, query)})
    found: dict[str, tuple[int, int, int, int]] = {}
    for execution_id in ids:
        rows, steps, logs, events = (table.get(execution_id, 0) for table in per_table)
        found[execution_id] = (rows, steps, logs, events)
    return found


async def insert_row(running: Running, workflow: dict[str, Any], **values: Any) -> str:
    row = execution_row(NewExecution(workflow["id"], workflow["activeVersionId"], input={}))
    row.update(values)
    async with running.engine.db.write() as conn:
        await conn.execute(insert(executions), [row])
    return str(row["id"])


async def set_columns(running: Running, ids: list[str], **values: Any) -> None:
    async with running.engine.db.write() as conn:
        await conn.execute(executions.update().where(executions.c.id.in_(ids)).values(**values))


async def children_of(running: Running, parent_id: str) -> list[str]:
    rows = await sql(
        running, "SELECT id FROM executions WHERE parent_execution_id = :p", p=parent_id
    )
    return [row["id"] for row in rows]


async def test_prune_removes_old_finished_executions_with_their_rows_and_nothing_else(
    db_url: str, start_engine: StartEngine
) -> None:
    # The reconciler passes once, at start: pending rows inserted later stay pending.
    running = await start(start_engine, db_url, reconcile_interval_ms=HOUR)
    made = {doc["name"]: await running.create_workflow(doc) for doc in WORKFLOWS}

    async def finished(workflow: str) -> str:
        execution_id = await running.execute(workflow)
        await running.wait(execution_id)
        return execution_id

    old_completed = await finished("one")
    old_failed = await finished("boom")
    old_cancelled = await running.execute("slow")
    await running.wait(old_cancelled, until=lambda e: e["status"] in ("running", "waiting"))
    assert (await running.client.post(f"/api/executions/{old_cancelled}/cancel")).is_success
    await running.wait(old_cancelled)
    old_parent = await finished("parent")
    [old_child] = await children_of(running, old_parent)
    recent = await finished("one")
    # A tree whose child is still running, and a failed execution with a running re-run.
    live_parent = await finished("parent")
    [live_child] = await children_of(running, live_parent)
    rerun_source = await finished("boom")
    future = datetime.now(UTC) + timedelta(hours=1)
    live = {"status": "running", "lease_expires_at": future, "started_at": days_ago(90)}
    rerun = await insert_row(running, made["boom"], rerun_of_id=rerun_source, **live)
    pending = await insert_row(running, made["one"], created_at=days_ago(90))
    still_running = await insert_row(running, made["one"], created_at=days_ago(90), **live)
    waiting = await insert_row(
        running, made["one"], created_at=days_ago(90), status="waiting", started_at=days_ago(90)
    )

    old = [old_completed, old_failed, old_cancelled, old_parent, old_child]
    await set_columns(
        running, [*old, live_parent, live_child, rerun_source], completed_at=days_ago(40)
    )
    await set_columns(running, [live_child], completed_at=None, **live)
    kept = [recent, live_parent, live_child, rerun_source, rerun, pending, still_running, waiting]
    before = await rows_of(running, old + kept)
    assert all(before[i][1] and before[i][2] and before[i][3] for i in old)  # real rows

    dry = await prune(running.engine.db, days_ago(30), dry_run=True)
    assert (dry.removed.executions, dry.kept) == (5, 2)
    assert await rows_of(running, old + kept) == before

    report = await prune(running.engine.db, days_ago(30), batch_size=2)
    assert report.removed.executions == 5
    assert report.kept == 2  # the live tree and the re-run's source
    assert report.removed.steps == sum(before[i][1] for i in old)
    assert report.removed.logs == sum(before[i][2] for i in old)
    assert report.removed.events == sum(before[i][3] for i in old)
    after = await rows_of(running, old + kept)
    assert all(after[i] == (0, 0, 0, 0) for i in old)
    assert {i: after[i] for i in kept} == {i: before[i] for i in kept}
    statuses = await sql(running, "SELECT id, status FROM executions")
    assert {row["id"]: row["status"] for row in statuses}[pending] == "pending"

    # Once the child and the re-run have finished, their old executions go too; the re-run,
    # finished just now, stays (its link to the removed source is set to null).
    await set_columns(
        running, [live_child], status="completed", completed_at=days_ago(40), lease_expires_at=None
    )
    await set_columns(running, [rerun], status="completed", completed_at=datetime.now(UTC))
    report = await prune(running.engine.db, days_ago(30))
    assert report.removed.executions == 3
    after = await rows_of(running, kept)
    assert [after[i][0] for i in kept] == [1, 0, 0, 0, 1, 1, 1, 1]
    [link] = await sql(running, "SELECT rerun_of_id FROM executions WHERE id = :id", id=rerun)
    assert link["rerun_of_id"] is None


async def test_background_retention_removes_old_executions_when_set(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(
        start_engine, db_url, execution_retention_days=1, retention_interval_ms=200
    )
    assert running.engine.retention is not None
    made = await running.create_workflow(ONE)
    new = await running.execute("one")
    await running.wait(new)
    step_id = await scalar(
        running, "SELECT step_id FROM execution_steps WHERE execution_id = :id", id=new
    )
    async with running.engine.db.write() as conn:
        await insert_history(
            conn,
            workflow_id=made["id"],
            version_id=made["activeVersionId"],
            step_id=step_id,
            count=300,
            finished_at=days_ago(2),
        )
    old = "SELECT count(*) FROM executions WHERE id LIKE 'old-%'"
    assert await scalar(running, old) == 300

    async def all_gone() -> bool:
        return int(await scalar(running, old)) == 0

    await eventually(all_gone, timeout=30)
    assert (
        await scalar(running, "SELECT count(*) FROM execution_logs WHERE execution_id LIKE 'old-%'")
        == 0
    )
    assert (await running.wait(new))["status"] == "completed"
    assert (await rows_of(running, [new]))[new][0] == 1


async def test_prune_command_on_the_database(
    db_url: str, start_engine: StartEngine, tmp_path: Path
) -> None:
    running = await start(start_engine, db_url)
    made = await running.create_workflow(ONE)
    new = await running.execute("one")
    await running.wait(new)
    step_id = await scalar(
        running, "SELECT step_id FROM execution_steps WHERE execution_id = :id", id=new
    )
    async with running.engine.db.write() as conn:
        for prefix, count, age in (("a40-", 20, 40), ("b10-", 5, 10)):
            await insert_history(
                conn,
                workflow_id=made["id"],
                version_id=made["activeVersionId"],
                step_id=step_id,
                count=count,
                finished_at=days_ago(age),
                prefix=prefix,
                logs=2,
                events=3,
            )
    env = {"DATABASE_URL": db_url, "DATA_DIR": str(tmp_path / "cli-data")}

    def cli(*args: str) -> Any:
        return run_cli(["prune", *args], tmp_path, env)

    dry = await asyncio.to_thread(cli, "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("Would remove 20 executions that finished before ")
    assert await scalar(running, "SELECT count(*) FROM executions") == 26

    done = await asyncio.to_thread(cli, "--older-than", "30d")
    assert done.returncode == 0, done.stderr
    # 20 executions with 1 step, 2 log lines and 3 events each.
    assert "Removed 20 executions that finished before " in done.stdout
    assert "140 rows in all (20 steps, 40 logs, 60 events)" in done.stdout
    assert await scalar(running, "SELECT count(*) FROM executions") == 6

    done = await asyncio.to_thread(cli, "--older-than", "12h")
    assert done.returncode == 0, done.stderr
    assert "Removed 5 executions" in done.stdout
    rows = await sql(running, "SELECT id, status FROM executions")
    assert rows == [{"id": new, "status": "completed"}]

    for bad in ("30x", "0d"):  # every case: tests/unit/test_retention.py
        refused = await asyncio.to_thread(cli, "--older-than", bad)
        assert refused.returncode == 2, (bad, refused.stdout, refused.stderr)
        assert f"--older-than: invalid duration '{bad}'" in refused.stderr
    assert (await rows_of(running, [new]))[new][0] == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_100k_old_executions_are_pruned_while_new_ones_run(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    made = await running.create_workflow(ONE)
    first = await running.execute("one")
    await running.wait(first)
    step_id = await scalar(
        running, "SELECT step_id FROM execution_steps WHERE execution_id = :id", id=first
    )
    async with running.engine.db.write() as conn:
        history = await insert_history(
            conn,
            workflow_id=made["id"],
            version_id=made["activeVersionId"],
            step_id=step_id,
            count=100_000,
            finished_at=days_ago(31),
            logs=1,
            events=2,
        )
    old = "SELECT count(*) FROM executions WHERE id LIKE 'old-%'"
    assert await scalar(running, old) == history.count

    new_ids: list[str] = [first]
    stop = asyncio.Event()
    finals: dict[str, asyncio.Future[str]] = {}

    async def on_event(event: Any) -> None:
        if event.type in ("completed", "failed", "cancelled"):
            future = finals.setdefault(event.execution_id, asyncio.Future())
            if not future.done():
                future.set_result(event.type)

    async def load() -> None:
        # 1-step executions, 8 at a time, until told to stop; each waited for by its final
        # event (not by polling the API, which would compete with the pass for the CPU).
        async def lane() -> None:
            while not stop.is_set():
                started = await running.engine.service.execute("one", {})
                new_ids.append(started.execution_id)
                future = finals.setdefault(started.execution_id, asyncio.Future())
                await asyncio.wait_for(future, 60)

        await asyncio.gather(*(lane() for _ in range(8)))

    async def completed_new() -> int:
        return int(
            await scalar(
                running,
                "SELECT count(*) FROM executions WHERE status = 'completed' "
                "AND id NOT LIKE 'old-%'",
            )
        )

    unsubscribe = running.engine.bus.subscribe(on_event)
    loader = asyncio.create_task(load())
    await eventually(lambda: asyncio.sleep(0, len(new_ids) > 20))
    at_start = await completed_new()
    # A quicker pace than the background's (PAUSE_RATIO), to keep the test short.
    report = await prune(running.engine.db, days_ago(30), pause_ratio=0.25)
    during = await completed_new() - at_start
    stop.set()
    await asyncio.wait_for(loader, 60)
    unsubscribe()

    assert report.removed.executions == history.count
    assert report.removed.rows == history.count * (1 + 1 + history.logs + history.events)
    assert await scalar(running, old) == 0
    for table in ("execution_steps", "execution_logs", "execution_events"):
        query = f"SELECT count(*) FROM {table} WHERE execution_id LIKE 'old-%'"
        assert await scalar(running, query) == 0, table
    # New executions kept completing while the pass ran, and none of them was touched.
    assert during > 0
    rows = await rows_of(running, new_ids)
    assert len(set(rows.values())) == 1, set(rows.values())
    executions_, steps, logs, events = rows[first]
    assert (executions_, steps) == (1, 1) and logs > 0 and events > 0
    statuses = await sql(running, "SELECT status, count(*) AS n FROM executions GROUP BY status")
    assert statuses == [{"status": "completed", "n": len(new_ids)}]
