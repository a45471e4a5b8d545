"""The group-committing writer: fencing per (execution, token), isolation of a bad write, order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import text, update

from tests.conftest import StartEngine
from workflow_engine.domain.definition import WorkflowDefinition
from workflow_engine.domain.status import ExecutionStatus
from workflow_engine.errors import DuplicateKey, LeaseLost
from workflow_engine.ids import new_id
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.tables import executions
from workflow_engine.storage.writer import ExecutionWriter, Finish, StepWrite, WriteOp

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


async def test_what_the_writer_stores_reads_back_as_written(
    db_url: str, start_engine: StartEngine
) -> None:
    """Datetimes to the microsecond and in UTC, JSON values and JSON null, the cancel request the
    fence returns, and the final status, in the same stored form as the rest of the engine
    writes (each database has a flush of its own: writer_pg.py, writer_sqlite.py)."""
    running = await start_engine(db_url, execution_concurrency=1)
    engine = running.engine
    execution_id, step_id = await _running_execution(running, token=1)
    cancel_at = datetime(2026, 3, 4, 5, 6, 7, 89, tzinfo=UTC)
    async with engine.db.write() as conn:
        await conn.execute(
            update(executions)
            .where(executions.c.id == execution_id)
            .values(cancel_requested_at=cancel_at)
        )
    async with engine.db.read() as conn:
        # Written by SQLAlchemy (_running_execution): the writer's copy must equal it in SQL.
        started = (await ex_store.get_execution(conn, execution_id))["started_at"]
    step = _step_row(step_id, "completed")
    step.values.update(started_at=started, output={"k": [1, 2.5, None, "é"]}, input=None)
    logged = datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)  # no microseconds
    log_row = {
        "id": new_id(),
        "execution_id": execution_id,
        "level": "info",
        "message": "hello",
        "metadata": None,
        "timestamp": logged,
        "seq": 1,
    }
    ended = datetime(2026, 1, 2, 3, 4, 7, 5, tzinfo=UTC)
    op = WriteOp(
        execution_id,
        1,
        steps=[step],
        logs=[log_row],
        finish=Finish(ExecutionStatus.COMPLETED, None, None, ended, 2000, 3),
    )
    assert await ExecutionWriter(engine.db, lease_ms=30_000).submit(op) == cancel_at
    async with engine.db.read() as conn:
        [stored] = await ex_store.list_steps(conn, execution_id)
        [line] = await ex_store.list_logs(conn, execution_id)
        row = await ex_store.get_execution(conn, execution_id)
        nulls = (
            await conn.execute(
                text(
                    "SELECT s.input IS NULL, e.output IS NULL, l.metadata IS NULL, "
                    "s.started_at = e.started_at "
                    "FROM execution_steps s JOIN executions e ON e.id = s.execution_id "
                    "JOIN execution_logs l ON l.execution_id = e.id WHERE e.id = :id"
                ),
                {"id": execution_id},
            )
        ).one()
        order = await conn.scalar(
            text(
                "SELECT count(*) FROM execution_logs l JOIN executions e "
                "ON e.id = l.execution_id WHERE e.id = :id AND l.timestamp < e.completed_at "
                "AND e.created_at > l.timestamp"
            ),
            {"id": execution_id},
        )
    assert stored["started_at"] == started and stored["output"] == {"k": [1, 2.5, None, "é"]}
    assert stored["input"] is None and line["metadata"] is None
    assert line["timestamp"] == logged and line["seq"] == 1
    # None is stored as JSON null, not SQL NULL; the same instant is stored the same way.
    assert tuple(nulls) == (False, False, False, True)
    assert row["status"] == "completed" and row["completed_at"] == ended
    assert row["duration_ms"] == 2000 and row["retry_count"] == 3 and row["output"] is None
    assert row["lease_expires_at"] is None and row["lease_owner"] is None
    # Stored datetimes compare in SQL as the datetimes they are, whichever code wrote them
    # (created_at was written by SQLAlchemy, today; the log line by the writer, in January).
    assert order == 1
