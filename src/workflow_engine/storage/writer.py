"""Group commit for executors: the writes of all running executions, one transaction at a time.

Each executor hands its write (a step row, log rows, events, or the final status) to `submit`
and awaits it. One flusher task takes everything queued, writes it in a single transaction with
a handful of statements, and resolves every caller once it committed: a checkpoint is still
durable before its execution goes on, but N executions share one commit instead of paying N.

Fencing stays per execution: one statement renews the leases of every execution in the batch
whose fencing token still matches; the writes of the others are dropped and their callers get
`LeaseLost`.

A write the database failed raises, like every storage error, `StorageUnavailable` (try again),
`DuplicateKey` (a row it inserts is there already) or `RefusedValue`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.domain.status import ExecutionStatus
from workflow_engine.errors import LeaseLost
from workflow_engine.records import record
from workflow_engine.storage import writer_pg, writer_sqlite
from workflow_engine.storage.db import Database
from workflow_engine.storage.tables import (
    execution_events,
    execution_logs,
    execution_steps,
    executions,
)

log = logging.getLogger(__name__)
MAX_BATCH = 500


@record
class StepWrite:
    """Insert the step row (`insert`) or update the columns in `values`."""

    step_key: str
    values: dict[str, Any]
    insert: bool = False


@record
class Finish:
    status: ExecutionStatus
    output: Any
    error: str | None
    completed_at: datetime
    duration_ms: int | None
    retries: int

    def columns(self) -> dict[str, Any]:
        """What the final write sets (`retries` is added to the execution's retry count)."""
        return {
            "status": self.status.value,
            "output": self.output,
            "error": self.error,
            "completed_at": self.completed_at,
            "duration_ms": self.duration_ms,
            "retries": self.retries,
        }


@dataclass
class WriteOp:
    execution_id: str
    token: int
    steps: list[StepWrite] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    finish: Finish | None = None
    starts: list[dict[str, Any]] = field(default_factory=list)
    """New `pending` executions (rows made by `executions.execution_row`) inserted with this
    write, if it is made: the failure alert a failed execution starts (engine/alerts.py). A row
    whose (workflow, idempotency key) is taken already is left out."""
    done: asyncio.Future[datetime | None] | None = None


class ExecutionWriter:
    def __init__(self, db: Database, *, lease_ms: int) -> None:
        self.db = db
        self.lease_ms = lease_ms
        self._queue: list[WriteOp] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, op: WriteOp) -> datetime | None:
        """Write `op` (fenced) and return the execution's `cancel_requested_at`.

        Raises LeaseLost when another worker owns the execution now; re-raises a database error
        that failed the batch.
        """
        op.done = asyncio.get_running_loop().create_future()
        self._queue.append(op)
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush_forever(), name="execution-writer")
        # Shielded: a caller cancelled meanwhile can still learn whether its write was made.
        return await asyncio.shield(op.done)

    async def _flush_forever(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                self._resolve(batch, await self._flush(batch))
            except Exception as exc:
                if len(batch) == 1:
                    _fail(batch[0], exc)
                    continue
                # One bad write must not fail its neighbours: each on its own, then.
                log.warning(
                    "a batch of %d writes failed (%s); writing them one by one", len(batch), exc
                )
                for op in batch:
                    try:
                        self._resolve([op], await self._flush([op]))
                    except Exception as single:
                        _fail(op, single)

    @staticmethod
    def _resolve(batch: list[WriteOp], owned: dict[tuple[str, int], datetime | None]) -> None:
        for op in batch:
            if op.done is None or op.done.done():
                continue
            key = (op.execution_id, op.token)
            if key in owned:
                op.done.set_result(owned[key])
            else:
                op.done.set_exception(LeaseLost())

    async def close(self) -> None:
        """Wait until everything submitted is written (at shutdown)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _flush(self, batch: list[WriteOp]) -> dict[tuple[str, int], datetime | None]:
        """One transaction for the batch (SQLite; PostgreSQL has its own statement); returns
        {(execution_id, token): cancel_requested_at} of the writes that were made (their
        caller still owns the execution)."""
        if self.db.dialect == "postgresql":
            return await self._flush_postgresql(batch)
        pairs = list({(op.execution_id, op.token) for op in batch})
        async with self.db.write() as conn:
            owned = await writer_sqlite.fence(conn, pairs, **self._lease_params())
            mine = [op for op in batch if (op.execution_id, op.token) in owned]
            await _write_steps(conn, mine)
            await writer_sqlite.insert(conn, execution_logs, [r for op in mine for r in op.logs])
            await writer_sqlite.insert(
                conn, execution_events, [r for op in mine for r in op.events]
            )
            await writer_sqlite.finish(
                conn,
                [
                    (op.execution_id, op.token, op.finish.columns())
                    for op in mine
                    if op.finish is not None
                ],
            )
            starts = [row for op in mine for row in op.starts]
            if starts:
                await conn.execute(
                    sqlite_insert(executions).on_conflict_do_nothing(
                        index_elements=["workflow_id", "idempotency_key"]
                    ),
                    starts,
                )
        return owned

    async def _flush_postgresql(
        self, batch: list[WriteOp]
    ) -> dict[tuple[str, int], datetime | None]:
        """The same batch as one statement (see writer_pg.py)."""
        fence: dict[tuple[str, int], dict[str, Any]] = {}
        for op in batch:
            entry = fence.setdefault(
                (op.execution_id, op.token),
                {"id": op.execution_id, "token": op.token, "finish": False},
            )
            if op.finish is not None:
                entry.update(finish=True, **op.finish.columns())
        step_inserts: list[dict[str, Any]] = []
        step_updates: list[dict[str, Any]] = []
        for (execution_id, token, step_key), step in _merged_steps(batch).items():
            row = {"execution_id": execution_id, "token": token, "step_key": step_key}
            if step.insert:
                step_inserts.append({**row, **step.values})
            else:
                unknown = step.values.keys() - writer_pg.STEP_COLUMNS
                if unknown:
                    raise ValueError(f"not a step column: {sorted(unknown)}")
                step_updates.append({**row, "cols": sorted(step.values), **step.values})
        payload = {
            "fence": list(fence.values()),
            "step_inserts": step_inserts,
            "step_updates": step_updates,
            "logs": [{**row, "token": op.token} for op in batch for row in op.logs],
            "events": [{**row, "token": op.token} for op in batch for row in op.events],
            "starts": [
                {**row, "source_id": op.execution_id, "token": op.token}
                for op in batch
                for row in op.starts
            ],
        }
        async with self.db.autocommit() as conn:
            rows = await writer_pg.flush(conn, payload, **self._lease_params())
        return {(execution_id, token): cancel for execution_id, token, cancel in rows}

    def _lease_params(self) -> dict[str, datetime]:
        """`now`, the lease's new end, and `renew_before`: a write renews the lease only once
        a sixth of it has passed since the last renewal, so checkpoints in quick succession
        leave the indexed lease column alone (an in-place update on PostgreSQL), while the
        heartbeat, every third of a lease, always renews."""
        now = datetime.now(UTC)
        return {
            "now": now,
            "lease_until": now + timedelta(milliseconds=self.lease_ms),
            "renew_before": now + timedelta(milliseconds=self.lease_ms * 5 / 6),
        }


def _fail(op: WriteOp, exc: Exception) -> None:
    if op.done is not None and not op.done.done():
        op.done.set_exception(exc)


def _merged_steps(ops: list[WriteOp]) -> dict[tuple[str, int, str], StepWrite]:
    """Several writes of one step row in a batch merged in order, so the last one wins."""
    merged: dict[tuple[str, int, str], StepWrite] = {}
    for op in ops:
        for step in op.steps:
            key = (op.execution_id, op.token, step.step_key)
            earlier = merged.get(key)
            merged[key] = (
                step
                if earlier is None
                else StepWrite(step.step_key, {**earlier.values, **step.values}, earlier.insert)
            )
    return merged


async def _write_steps(conn: AsyncConnection, ops: list[WriteOp]) -> None:
    """The step rows of the batch on SQLite (writer_sqlite.py)."""
    merged = _merged_steps(ops)
    await writer_sqlite.insert(
        conn,
        execution_steps,
        [
            {"execution_id": execution_id, "step_key": step.step_key, **step.values}
            for (execution_id, _token, _key), step in merged.items()
            if step.insert
        ],
    )
    await writer_sqlite.update_steps(
        conn,
        [
            (execution_id, step.step_key, step.values)
            for (execution_id, _token, _key), step in merged.items()
            if not step.insert
        ],
    )
