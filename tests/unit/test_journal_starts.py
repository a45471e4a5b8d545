"""When a step's start is committed: at once, or with the step's end (a pure step)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from workflow_engine.engine import checkpoints as cp
from workflow_engine.engine.journal import Journal
from workflow_engine.events.bus import LocalEventBus
from workflow_engine.storage.writer import WriteOp


class RecordingWriter:
    """The ExecutionWriter's `submit`, keeping each write instead of committing it."""

    def __init__(self) -> None:
        self.ops: list[WriteOp] = []

    async def submit(self, op: WriteOp) -> datetime | None:
        self.ops.append(op)
        return None


def journal() -> tuple[Journal, RecordingWriter]:
    writer = RecordingWriter()
    made = Journal(
        writer=writer,  # type: ignore[arg-type]
        bus=LocalEventBus(),
        execution_id="e1",
        workflow_id="w1",
        token=1,
        last_seq=0,
        cancel=asyncio.Event(),
        retry_for_s=1.0,
    )
    return made, writer


def state(key: str, position: int) -> cp.StepState:
    found = cp.StepState(cp.StepRef(key, f"id-{key}", position, key))
    found.started_at = cp.now()
    return found


def steps_of(op: WriteOp) -> list[tuple[str, Any, bool]]:
    return [(s.step_key, s.values["status"], s.insert) for s in op.steps]


async def test_a_pure_first_step_is_committed_once_with_its_end() -> None:
    j, writer = journal()
    j.defer(cp.execution_started("api", 1, {}))
    a = state("a", 0)
    await j.start_step(cp.step_started(a, None), pure=True)
    assert writer.ops == []  # nothing committed yet: it runs first
    j.defer(cp.step_completed(a, 1))
    await j.flush()
    [op] = writer.ops
    assert steps_of(op) == [("a", "running", True), ("a", "completed", False)]
    assert [e["type"] for e in op.events] == ["started", "step_started", "step_completed"]


async def test_a_step_end_is_stored_before_the_next_step_starts_even_a_pure_one() -> None:
    j, writer = journal()
    a, b = state("a", 0), state("b", 1)
    await j.start_step(cp.step_started(a, None), pure=True)
    j.defer(cp.step_completed(a, 1))
    await j.start_step(cp.step_started(b, None), pure=True)
    [op] = writer.ops  # written before b runs: a's output, then b's start
    assert steps_of(op) == [
        ("a", "running", True),
        ("a", "completed", False),
        ("b", "running", True),
    ]


async def test_a_step_that_is_not_pure_is_started_durably_before_it_runs() -> None:
    j, writer = journal()
    j.defer(cp.execution_started("api", 1, {}))
    await j.start_step(cp.step_started(state("call", 0), None), pure=False)
    [op] = writer.ops
    assert steps_of(op) == [("call", "running", True)]
    assert [e["type"] for e in op.events] == ["started", "step_started"]
