"""Pure transition functions: what an attempt's outcome writes and tells (no I/O).

Each function turns one thing that happened to a step or an execution into a `Checkpoint`: the
step row's new columns, the log lines and the events. The `Journal` writes checkpoints; these
functions only decide their content, checked against the status tables in `domain.status`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from workflow_engine.domain.status import (
    EventType,
    ExecutionStatus,
    StepStatus,
    check_step_transition,
)
from workflow_engine.records import record
from workflow_engine.storage.writer import Finish

Fields = dict[str, Any]


@record
class LogLine:
    level: str
    message: str
    metadata: Fields | None = None


@record
class StepRef:
    """A step row: a workflow step, or one item of a `map` step (`fetch[3]`)."""

    key: str
    step_id: str
    position: int
    name: str
    index: int | None = None
    """The item's index, for an item of a map step."""

    def fields(self) -> Fields:
        """What every event and log line about this step carries."""
        found: Fields = {"stepId": self.step_id, "stepKey": self.key}
        if self.index is not None:
            found["index"] = self.index
        return found


@dataclass
class StepState:
    """What this delivery knows of a step row."""

    ref: StepRef
    status: StepStatus | None = None
    """None: no row yet."""
    attempt: int = 1
    started_at: datetime | None = None
    input: Any = None
    progress: Any = None
    """What the step has done so far (its row's `progress`: steps/base.py `save_progress`)."""


@record
class StepPatch:
    ref: StepRef
    values: Fields
    insert: bool
    """No row yet: insert one (with `values`), else update those columns."""


@record
class Checkpoint:
    step: StepPatch | None = None
    logs: tuple[LogLine, ...] = ()
    events: tuple[tuple[EventType, Fields], ...] = ()
    finish: Finish | None = None
    applies: tuple[tuple[StepState, StepStatus], ...] = field(default=())
    """Step states to move to their new status once the checkpoint is made."""
    starts: tuple[Fields, ...] = ()
    """New executions' rows inserted with the checkpoint (a failure alert: engine/alerts.py)."""
    at: datetime | None = None
    """When its events happened (None: when it is written)."""


def now() -> datetime:
    return datetime.now(UTC)


def ms_between(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds() * 1000)


def _patch(state: StepState, status: StepStatus, values: Fields) -> StepPatch:
    check_step_transition(state.status, status)
    return StepPatch(state.ref, {"status": status.value, **values}, insert=state.status is None)


def _step(state: StepState, status: StepStatus, values: Fields, **rest: Any) -> Checkpoint:
    return Checkpoint(step=_patch(state, status, values), applies=((state, status),), **rest)


# --- steps ---------------------------------------------------------------------------------------


def step_skipped(state: StepState, reason: str) -> Checkpoint:
    stamp = now()
    ref = state.ref
    return _step(
        state,
        StepStatus.SKIPPED,
        {"started_at": stamp, "completed_at": stamp, "duration_ms": 0, "output": None},
        logs=(LogLine("info", f"Step '{ref.name}' skipped: {reason}", ref.fields()),),
        events=(
            (
                EventType.STEP_COMPLETED,
                {**ref.fields(), "status": "skipped", "durationMs": 0, "output": None},
            ),
        ),
    )


def step_started(state: StepState, stored_input: Any) -> Checkpoint:
    ref, attempt = state.ref, state.attempt
    assert state.started_at is not None
    fields = {**ref.fields(), "attempt": attempt}
    return _step(
        state,
        StepStatus.RUNNING,
        {
            "started_at": state.started_at,
            "input": stored_input,
            "error": None,
            "retry_count": attempt - 1,
        },
        logs=(
            LogLine(
                "info" if attempt == 1 else "debug",
                f"Step '{ref.name}' started" + (f" (attempt {attempt})" if attempt > 1 else ""),
                fields,
            ),
        ),
        events=((EventType.STEP_STARTED, fields),),
        # A first start's event is stamped with the row's start, so a live view shows what a
        # reload does (and branches started together, together).
        at=state.started_at if attempt == 1 else None,
    )


def step_delta(state: StepState, text: str) -> Checkpoint:
    """A piece of the running step's output, for live subscribers (no step row change)."""
    fields = {**state.ref.fields(), "attempt": state.attempt, "delta": text}
    return Checkpoint(events=((EventType.STEP_DELTA, fields),))


def step_progress(state: StepState, progress: Any, message: str | None) -> Checkpoint:
    """What a running step has done so far, stored on its row (no event but its log line)."""
    ref = state.ref
    logs = () if message is None else (LogLine("info", message, ref.fields()),)
    return _step(state, StepStatus.RUNNING, {"progress": progress}, logs=logs)


def step_retrying(
    state: StepState, stored_input: Any, error: str, max_attempts: int, delay_ms: int
) -> Checkpoint:
    ref, attempt = state.ref, state.attempt
    fields = {**ref.fields(), "attempt": attempt, "error": error}
    return _step(
        state,
        StepStatus.RUNNING,
        {
            "error": error,
            "retry_count": attempt,
            "started_at": state.started_at,
            "input": stored_input,
        },
        logs=(
            LogLine(
                "warn",
                f"Step '{ref.name}' failed (attempt {attempt}/{max_attempts}): {error}; "
                f"retrying in {delay_ms} ms",
                {**fields, "nextDelayMs": delay_ms},
            ),
        ),
        events=((EventType.STEP_RETRYING, {**fields, "nextDelayMs": delay_ms}),),
    )


def step_failed(state: StepState, stored_input: Any, error: str) -> Checkpoint:
    ref, attempt = state.ref, state.attempt
    stamp = now()
    started_at = state.started_at or stamp
    duration = ms_between(started_at, stamp)
    fields = {**ref.fields(), "attempt": attempt, "error": error}
    tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
    return _step(
        state,
        StepStatus.FAILED,
        {
            "error": error,
            "retry_count": attempt - 1,
            "started_at": started_at,
            "input": stored_input,
            "completed_at": stamp,
            "duration_ms": duration,
        },
        logs=(LogLine("error", f"Step '{ref.name}' failed after {tries}: {error}", fields),),
        events=((EventType.STEP_FAILED, {**fields, "durationMs": duration}),),
    )


def step_completed(state: StepState, output: Any) -> Checkpoint:
    ref, attempt = state.ref, state.attempt
    stamp = now()
    assert state.started_at is not None
    duration = ms_between(state.started_at, stamp)
    fields = {**ref.fields(), "attempt": attempt, "durationMs": duration}
    return _step(
        state,
        StepStatus.COMPLETED,
        {
            "output": output,
            "completed_at": stamp,
            "duration_ms": duration,
            "retry_count": attempt - 1,
            "error": None,
        },
        logs=(LogLine("info", f"Step '{ref.name}' completed in {duration} ms", fields),),
        events=((EventType.STEP_COMPLETED, {**fields, "status": "completed", "output": output}),),
    )


def step_stopped(state: StepState, reason: str) -> Checkpoint:
    """A running step stopped from outside: cancel, timeout, or a failed sibling."""
    ref = state.ref
    stamp = now()
    duration = ms_between(state.started_at or stamp, stamp)
    fields = {**ref.fields(), "error": reason}
    return _step(
        state,
        StepStatus.FAILED,
        {"error": reason, "completed_at": stamp, "duration_ms": duration},
        logs=(LogLine("warn", f"Step '{ref.name}' stopped: {reason}", fields),),
        events=((EventType.STEP_FAILED, {**fields, "durationMs": duration}),),
    )


# --- executions ----------------------------------------------------------------------------------


def execution_started(
    label: str, token: int, input: Any, *, after_wait: bool = False
) -> Checkpoint:
    """The first delivery says the execution started; a later one that it resumed (after a
    wait, or after an interruption)."""
    if after_wait:
        return Checkpoint(logs=(LogLine("info", f"Execution resumed (delivery {token})"),))
    if token == 1:
        return Checkpoint(
            logs=(LogLine("info", f"Execution started ({label})"),),
            events=((EventType.STARTED, {"input": input, "status": "running"}),),
        )
    return Checkpoint(
        logs=(LogLine("warn", f"Execution resumed after an interruption (delivery {token})"),)
    )


_FINISH_LEVEL = {ExecutionStatus.COMPLETED: "info", ExecutionStatus.CANCELLED: "warn"}
_FINISH_EVENT = {
    ExecutionStatus.COMPLETED: EventType.COMPLETED,
    ExecutionStatus.FAILED: EventType.FAILED,
    ExecutionStatus.CANCELLED: EventType.CANCELLED,
}


def execution_finished(
    status: ExecutionStatus,
    started_at: datetime,
    *,
    output: Any = None,
    error: str | None = None,
    retries: int = 0,
) -> Checkpoint:
    stamp = now()
    duration = ms_between(started_at, stamp)
    text = {
        ExecutionStatus.COMPLETED: f"Execution completed in {duration} ms",
        ExecutionStatus.FAILED: f"Execution failed after {duration} ms: {error}",
        ExecutionStatus.CANCELLED: f"Execution cancelled after {duration} ms",
    }[status]
    data: Fields = {"durationMs": duration, "status": status.value}
    if status == ExecutionStatus.COMPLETED:
        data["output"] = output
    else:
        data["error"] = error
    return Checkpoint(
        logs=(LogLine(_FINISH_LEVEL.get(status, "error"), text, {"durationMs": duration}),),
        events=((_FINISH_EVENT[status], data),),
        finish=Finish(
            status=status,
            output=output,
            error=error,
            completed_at=stamp,
            duration_ms=duration,
            retries=retries,
        ),
    )
