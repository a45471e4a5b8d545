"""A log line is stored once (an `execution_logs` row with its event's seq), and the stored event
history a subscriber catches up from is still whole: the events and the lines merged by seq, with
lines stored before migration 0015 (whose `log` events sit in `execution_events`) replayed once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from tests.conftest import StartEngine
from tests.support.flows import insert_execution, sql, start
from workflow_engine.ids import new_id
from workflow_engine.storage.executions import last_event_seq, list_events
from workflow_engine.storage.tables import execution_events, execution_logs
from workflow_engine.storage.writer import ExecutionWriter, WriteOp

pytestmark = pytest.mark.timeout(60)

TWO_STEPS = {
    "name": "two",
    "steps": [
        {"key": "a", "type": "transform", "config": {"output": {"n": 1}}},
        {"key": "b", "type": "log", "config": {"message": "hello {{ steps.a.output.n }}"}},
    ],
}


async def test_each_log_line_is_stored_once_and_replayed_in_place(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(TWO_STEPS)
    execution_id = await running.execute("two")
    body = await running.wait(execution_id, timeout=15)
    assert body["status"] == "completed", body

    # The seed's query, as written, shows every line; none is also an event row.
    lines = await sql(
        running,
        "SELECT * FROM execution_logs WHERE execution_id = :id ORDER BY timestamp",
        id=execution_id,
    )
    assert any(line["message"] == "hello 1" for line in lines)
    assert [line["message"] for line in lines] == [entry["message"] for entry in body["logs"]]
    stored_log_events = await sql(
        running,
        "SELECT seq FROM execution_events WHERE execution_id = :id AND type = 'log'",
        id=execution_id,
    )
    assert stored_log_events == []

    async with running.engine.db.read() as conn:
        history = await list_events(conn, execution_id)
        assert await last_event_seq(conn, execution_id) == len(history)
        tail = await list_events(conn, execution_id, after_seq=3, limit=2)
    assert [row["seq"] for row in history] == list(range(1, len(history) + 1))
    types = [row["type"] for row in history]
    assert "started" in types and types[-1] == "completed"
    logged = [row["data"] for row in history if row["type"] == "log"]
    assert [(d["logId"], d["message"], d["level"]) for d in logged] == [
        (line["id"], line["message"], line["level"]) for line in lines
    ]
    assert [row["seq"] for row in tail] == [4, 5]


async def test_lines_stored_before_the_change_replay_once(
    db_url: str, start_engine: StartEngine
) -> None:
    """Rows as an engine before migration 0015 wrote them (each line also a `log` event, its
    row without seq), followed by a delivery of this engine: one history, in seq order."""
    running = await start(start_engine, db_url)
    await running.create_workflow(TWO_STEPS)
    execution_id = await running.execute("two")
    assert (await running.wait(execution_id, timeout=15))["status"] == "completed"
    async with running.engine.db.read() as conn:
        before = await list_events(conn, execution_id)
    stamp = datetime.now(UTC)
    old_line = {
        "id": "old-line",
        "execution_id": execution_id,
        "level": "info",
        "message": "from an older engine",
        "metadata": None,
        "timestamp": stamp,
        "seq": None,
    }
    next_seq = len(before) + 1
    async with running.engine.db.write() as conn:
        await conn.execute(insert(execution_logs), old_line)
        await conn.execute(
            insert(execution_events),
            {
                "execution_id": execution_id,
                "seq": next_seq,
                "type": "log",
                "data": {"level": "info", "message": "from an older engine", "logId": "old-line"},
                "timestamp": stamp,
            },
        )
    async with running.engine.db.read() as conn:
        after = await list_events(conn, execution_id)
        assert await last_event_seq(conn, execution_id) == next_seq
    assert [row["seq"] for row in after] == list(range(1, next_seq + 1))
    assert after[:-1] == before
    assert after[-1]["type"] == "log" and after[-1]["data"]["logId"] == "old-line"


async def test_a_catch_up_never_sees_half_a_write(db_url: str, start_engine: StartEngine) -> None:
    """A write stores log lines and events together; a catch-up read racing it sees all of it
    or none (one snapshot of both tables), never a gap a subscriber would skip for good."""
    running = await start(start_engine, db_url, execution_concurrency=1)
    engine = running.engine
    execution_id, _ = await insert_execution(running, TWO_STEPS, running_token=1)
    writer = ExecutionWriter(engine.db, lease_ms=30_000)
    writes = 150
    done = asyncio.Event()

    async def write() -> None:
        for n in range(writes):
            stamp = datetime.now(UTC)
            line = {
                "id": new_id(),
                "execution_id": execution_id,
                "level": "info",
                "message": f"line {n}",
                "metadata": None,
                "timestamp": stamp,
                "seq": 2 * n + 1,
            }
            event = {
                "execution_id": execution_id,
                "seq": 2 * n + 2,
                "type": "step_started",
                "data": {"n": n},
                "timestamp": stamp,
            }
            await writer.submit(WriteOp(execution_id, 1, logs=[line], events=[event]))
        done.set()

    reads = 0

    async def read() -> None:
        nonlocal reads
        while not done.is_set():
            async with engine.db.read() as conn:
                seqs = [row["seq"] for row in await list_events(conn, execution_id)]
            assert seqs == list(range(1, len(seqs) + 1)), seqs
            assert len(seqs) % 2 == 0, f"half a write: {seqs[-3:]}"
            reads += 1
            await asyncio.sleep(0)

    await asyncio.gather(write(), read(), read())
    assert reads > 0
    async with engine.db.read() as conn:
        assert len(await list_events(conn, execution_id)) == 2 * writes
