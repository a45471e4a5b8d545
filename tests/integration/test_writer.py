"""The group-committing writer: fencing per (execution, token), isolation of a bad write, order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import update

from tests.conftest import StartEngine
from workflow_engine.domain.definition import WorkflowDefinition
from workflow_engine.errors import DuplicateKey, LeaseLost
from workflow_engine.ids import new_id
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.tables import executions
from workflow_engine.storage.writer import ExecutionWriter, StepWrite, WriteOp

DOC = {"name": "w", "steps": [{"key": "a", "type": "transform", "config": {"output": 1}}]}


async def _running_execution(running: object, token: int) -> tuple[str, str]:
    engine = running.engine  # type: ignore[attr-defined]
    workflow_id = await engine.service.create_workflow(WorkflowDefinition.model_validate(DOC))
    async with engine.db.write() as conn:
        workflow = await wf_store.get_workflow(conn, workflow_id)
        step_ids = await wf_store.version_step_ids(conn, workflow["active_version_id"])
        execution_id = await ex_store.insert_execution(
            conn, ex_store.NewExecution(workflow_id, workflow["active_version_id"], {})
        )
        await conn.execute(
            update(executions)
            .where(executions.c.id == execution_id)
            .values(status="running", fencing_token=token, started_at=datetime.now(UTC))
        )
    return execution_id, step_ids["a"]


def _step_row(step_id: str, status: str) -> StepWrite:
    return StepWrite(
        "a",
        {
            "id": new_id(),
            "step_id": step_id,
            "position": 0,
            "retry_count": 0,
            "status": status,
            "input": None,
            "output": None,
            "error": None,
            "started_at": None,
            "completed_at": None,
            "duration_ms": None,
        },
        insert=True,
    )


async def test_a_stale_token_in_the_same_batch_writes_nothing(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start_engine(db_url, execution_concurrency=1)
    execution_id, step_id = await _running_execution(running, token=2)
    writer = ExecutionWriter(running.engine.db, lease_ms=30_000)
    stale = WriteOp(execution_id, 1, steps=[_step_row(step_id, "failed")])
    current = WriteOp(execution_id, 2, steps=[_step_row(step_id, "running")])
    results = await asyncio.gather(
        writer.submit(stale), writer.submit(current), return_exceptions=True
    )
    assert isinstance(results[0], LeaseLost)
    assert results[1] is None
    async with running.engine.db.read() as conn:
        rows = await ex_store.list_steps(conn, execution_id)
    assert [r["status"] for r in rows] == ["running"]


async def test_one_bad_write_does_not_fail_its_neighbours(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start_engine(db_url, execution_concurrency=1)
    first, first_step = await _running_execution(running, token=1)
    writer = ExecutionWriter(running.engine.db, lease_ms=30_000)
    log = {
        "id": new_id(),
        "execution_id": first,
        "level": "info",
        "message": "m",
        "metadata": None,
        "timestamp": datetime.now(UTC),
    }
    good = WriteOp(first, 1, steps=[_step_row(first_step, "running")])
    bad = WriteOp(first, 1, logs=[log, dict(log)])  # the same log id twice
    results = await asyncio.gather(writer.submit(good), writer.submit(bad), return_exceptions=True)
    assert results[0] is None
    assert isinstance(results[1], DuplicateKey)
    async with running.engine.db.read() as conn:
        assert [r["status"] for r in await ex_store.list_steps(conn, first)] == ["running"]


async def test_writes_of_one_step_in_a_batch_apply_in_order(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start_engine(db_url, execution_concurrency=1)
    execution_id, step_id = await _running_execution(running, token=1)
    writer = ExecutionWriter(running.engine.db, lease_ms=30_000)
    await writer.submit(WriteOp(execution_id, 1, steps=[_step_row(step_id, "pending")]))
    updates = [
        WriteOp(execution_id, 1, steps=[StepWrite("a", {"status": "running", "error": None})]),
        WriteOp(execution_id, 1, steps=[StepWrite("a", {"status": "failed"})]),
    ]
    await asyncio.gather(*(writer.submit(op) for op in updates))
    async with running.engine.db.read() as conn:
        assert [r["status"] for r in await ex_store.list_steps(conn, execution_id)] == ["failed"]


async def test_the_fence_renews_the_lease(db_url: str, start_engine: StartEngine) -> None:
    running = await start_engine(db_url, execution_concurrency=1)
    execution_id, _ = await _running_execution(running, token=1)
    writer = ExecutionWriter(running.engine.db, lease_ms=60_000)
    assert await writer.submit(WriteOp(execution_id, 1)) is None
    async with running.engine.db.read() as conn:
        row = await ex_store.get_execution(conn, execution_id)
    assert (row["lease_expires_at"] - datetime.now(UTC)).total_seconds() > 50


async def test_a_checkpoint_soon_after_a_renewal_leaves_the_lease_alone(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start_engine(db_url, execution_concurrency=1)
    execution_id, _ = await _running_execution(running, token=1)
    writer = ExecutionWriter(running.engine.db, lease_ms=1_200)

    async def lease() -> datetime:
        async with running.engine.db.read() as conn:
            value: datetime = (await ex_store.get_execution(conn, execution_id))["lease_expires_at"]
        return value

    await writer.submit(WriteOp(execution_id, 1))
    renewed = await lease()
    await writer.submit(WriteOp(execution_id, 1))
    assert await lease() == renewed
    # Once a sixth of the lease has passed since, a write renews it.
    await asyncio.sleep(0.3)
    await writer.submit(WriteOp(execution_id, 1))
    assert await lease() > renewed
