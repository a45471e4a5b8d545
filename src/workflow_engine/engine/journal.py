"""The journal of one delivery of an execution: writes, defers and publishes its checkpoints.

Every write goes through the group-committing `ExecutionWriter`, fenced, so only the current owner
of the execution writes. Events are numbered here (`seq`, on from what earlier deliveries stored)
and published once committed. Log lines get strictly increasing timestamps, so the seed's
`ORDER BY timestamp` is the order things happened.

A checkpoint can be *deferred*: kept for the execution's next write (the next step's start, or
the end), which commits it before anything else happens, one commit instead of two. The
executor flushes it on its own when no other write follows at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from workflow_engine.domain.status import EventType, StepStatus
from workflow_engine.engine.checkpoints import Checkpoint
from workflow_engine.errors import DuplicateKey, LeaseLost, NonRetryableStepError, RefusedValue
from workflow_engine.events.bus import Event, EventBus, log_event_data
from workflow_engine.ids import new_id
from workflow_engine.storage.writer import ExecutionWriter, StepWrite, WriteOp

log = logging.getLogger(__name__)
T = TypeVar("T")


class Journal:
    def __init__(
        self,
        *,
        writer: ExecutionWriter,
        bus: EventBus,
        execution_id: str,
        workflow_id: str,
        token: int,
        last_seq: int,
        cancel: asyncio.Event,
        retry_for_s: float,
    ) -> None:
        self.writer = writer
        self.bus = bus
        self.execution_id = execution_id
        self.workflow_id = workflow_id
        self.token = token
        self.seq = last_seq
        self.cancel = cancel
        """Set when a write finds a cancel request on the execution row."""
        self.retry_for_s = retry_for_s
        self._last_log_at = datetime.min.replace(tzinfo=UTC)
        self._deferred: list[tuple[Checkpoint, WriteOp, list[Event]]] = []

    @property
    def has_deferred(self) -> bool:
        return bool(self._deferred)

    def defer(self, checkpoint: Checkpoint) -> None:
        """Keep `checkpoint` for the next write (see the module docstring)."""
        op, events = self._op(checkpoint)
        self._deferred.append((checkpoint, op, events))
        _apply([checkpoint])

    async def start_step(self, checkpoint: Checkpoint, *, pure: bool) -> None:
        """A step's start, before it runs: written now, or deferred for a pure step (steps/base.py
        `pure`: lost in a crash, it is only run again) while what is deferred ends no step, so
        that it is committed with the step's end, one commit instead of two. A step that ended
        is stored before the next one starts (DESIGN.md section 5), so a start with an end
        deferred before it is written at once."""
        if pure and not any(_ends_step(entry[0]) for entry in self._deferred):
            self.defer(checkpoint)
        else:
            await self.write(checkpoint)

    async def flush(self) -> None:
        """Write what is deferred, if anything."""
        if self._deferred:
            await self.write(Checkpoint())

    async def write(self, checkpoint: Checkpoint) -> None:
        """Write `checkpoint` after whatever is deferred, in one fenced, group-committed write;
        publish its events once committed. Raises LeaseLost when another worker owns the
        execution now."""
        op, events = self._op(checkpoint)
        _apply([checkpoint])
        if self._deferred:
            earlier = [entry[1] for entry in self._deferred]
            op.steps[:0] = [step for e in earlier for step in e.steps]
            op.logs[:0] = [row for e in earlier for row in e.logs]
            op.events[:0] = [row for e in earlier for row in e.events]
            op.starts[:0] = [row for e in earlier for row in e.starts]
            events[:0] = [event for entry in self._deferred for event in entry[2]]
            self._deferred.clear()
        try:
            cancel_requested = await self._submit(op)
        except asyncio.CancelledError:
            # Cancelled while the write was in flight (shutdown): it may still be made. If it
            # was, tell subscribers, so that what they saw matches the database.
            if await _settled(op):
                await self._publish(events)
            raise
        if cancel_requested is not None:
            self.cancel.set()
        await self._publish(events)

    async def park(
        self,
        checkpoint: Checkpoint,
        write: Callable[[Any, list[dict[str, Any]], list[dict[str, Any]]], Awaitable[T]],
    ) -> T:
        """Write what is deferred, then `write(conn, log_rows, event_rows)` in a transaction of
        its own (parking the execution: storage/waits.py, fenced there); publish once
        committed."""
        await self.flush()
        op, events = self._op(checkpoint)
        _apply([checkpoint])
        async with self.writer.db.write() as conn:
            result = await write(conn, op.logs, op.events)
        await self._publish(events)
        return result

    async def renew(self) -> bool:
        """Renew the lease (an empty write); returns whether a cancel was requested."""
        return await self.writer.submit(WriteOp(self.execution_id, self.token)) is not None

    async def _submit(self, op: WriteOp) -> datetime | None:
        """Submit, trying again while the database is briefly unreachable (a restart). Gives up
        after `retry_for_s` (half a lease: before another worker could take the execution
        over). A refused duplicate (a write whose success went unacknowledged is there already)
        or a refused value is not retried: the delivery ends, and the execution resumes from
        what is stored."""
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.1
        while True:
            try:
                return await self.writer.submit(op)
            except (LeaseLost, DuplicateKey, RefusedValue):
                raise
            except Exception as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("execution %s: write failed (%s); retrying", op.execution_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _op(self, checkpoint: Checkpoint) -> tuple[WriteOp, list[Event]]:
        log_rows = [
            self._log_row(line.level, line.message, line.metadata) for line in checkpoint.logs
        ]
        events = self._events(log_rows, checkpoint.events, checkpoint.at)
        op = WriteOp(
            self.execution_id,
            self.token,
            logs=log_rows,
            # A log line is stored once: its row in execution_logs carries its event's seq.
            events=[event.row() for event in events[len(log_rows) :]],
            finish=checkpoint.finish,
            starts=list(checkpoint.starts),
        )
        if checkpoint.step is not None:
            patch = checkpoint.step
            values = patch.values
            if patch.insert:
                row = {
                    "id": new_id(),
                    "step_id": patch.ref.step_id,
                    "position": patch.ref.position,
                    "retry_count": 0,
                    "status": StepStatus.PENDING.value,
                    "input": None,
                    "output": None,
                    "error": None,
                    "started_at": None,
                    "completed_at": None,
                    "duration_ms": None,
                    **values,
                }
                op.steps.append(StepWrite(patch.ref.key, row, insert=True))
            else:
                op.steps.append(StepWrite(patch.ref.key, values))
        return op, events

    def _events(
        self,
        log_rows: list[dict[str, Any]],
        events: Iterable[tuple[EventType, dict[str, Any]]],
        at: datetime | None = None,
    ) -> list[Event]:
        """Number the events of one write: its log lines first (each row gets its event's seq),
        then the state changes (stamped `at`, or now)."""
        made = []
        for row in log_rows:
            event = self._event(EventType.LOG, log_event_data(row), row["timestamp"])
            row["seq"] = event.seq
            made.append(event)
        for event_type, data in events:
            made.append(self._event(event_type, data, at or datetime.now(UTC)))
        return made

    def _event(self, event_type: EventType, data: dict[str, Any], stamp: datetime) -> Event:
        self.seq += 1
        return Event(
            type=event_type.value,
            execution_id=self.execution_id,
            workflow_id=self.workflow_id,
            seq=self.seq,
            data=data,
            timestamp=stamp,
        )

    def _log_row(self, level: str, message: str, meta: dict[str, Any] | None) -> dict[str, Any]:
        stamp = datetime.now(UTC)
        if stamp <= self._last_log_at:
            stamp = self._last_log_at + timedelta(microseconds=1)
        self._last_log_at = stamp
        return {
            "id": new_id(),
            "execution_id": self.execution_id,
            "level": level,
            # What a step logs may hold anything: store what both databases accept.
            "message": jsonable(message),
            "metadata": jsonable(meta),
            "timestamp": stamp,
            "seq": None,
        }

    async def _publish(self, events: list[Event]) -> None:
        for event in events:
            await self.bus.publish(event)


def _apply(checkpoints: list[Checkpoint]) -> None:
    """Steps take their new status as soon as it is decided (the scheduler reads it); the write
    that stores it is the next one of the execution, so nothing else is written in between. If
    that write fails, the delivery ends and the next one reads what was stored."""
    for checkpoint in checkpoints:
        for state, status in checkpoint.applies:
            state.status = status


async def _settled(op: WriteOp, timeout_s: float = 10.0) -> bool:
    """Whether a submitted write was made (waiting for it, bounded)."""
    if op.done is None:
        return False
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.shield(op.done)
    except BaseException:
        return False
    return True


MAX_INT_BITS = 13_000
"""About 3,900 decimal digits: Python refuses to write longer integers as JSON text."""


def jsonable(value: Any) -> Any:
    """`value` as JSON both databases can store: PostgreSQL refuses NUL characters and NaN.
    Raises NonRetryableStepError for what no database can store (an integer of thousands of
    digits): the step that made it fails at once, rather than its writes failing."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_INT_BITS:
            raise NonRetryableStepError("the value holds a number too large to store")
        return value
    if value is None or isinstance(value, float | bool):
        return value
    if isinstance(value, dict):
        return {jsonable(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def _ends_step(checkpoint: Checkpoint) -> bool:
    return any(status is not StepStatus.RUNNING for _state, status in checkpoint.applies)
