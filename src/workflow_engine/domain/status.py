"""Execution and step statuses, the transitions allowed between them, and event names."""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    WAITING = "waiting"
    """An addition to the seed's five (DESIGN.md section 14): parked on a durable timer or an
    event, holding no worker slot and no lease."""

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class EventType(StrEnum):
    """What an execution reports to subscribers (DESIGN.md section 7)."""

    STARTED = "started"
    STEP_STARTED = "step_started"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    STEP_RETRYING = "step_retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOG = "log"
    WAITING = "waiting"
    """A step parked the execution: `stepKey`, and `until` and/or `event` (`{name, key}`)."""
    RESUMED = "resumed"
    """A parked step ended its wait: `stepKey`, `reason` (`time`, `event` or `timeout`)."""
    STEP_DELTA = "step_delta"
    """A piece of a running step's output (an llm step's tokens): `stepKey`, `attempt`, `delta`.
    The deltas of one try, in `seq` order, add up to its text (engine/deltas.py)."""


FINAL_STATUSES = frozenset(
    {ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)

RERUNNABLE = frozenset({ExecutionStatus.FAILED, ExecutionStatus.CANCELLED})

STEP_TRANSITIONS: dict[StepStatus | None, frozenset[StepStatus]] = {
    # No row yet: a step starts, is skipped, or fails before it could start (a bad template).
    None: frozenset({StepStatus.RUNNING, StepStatus.SKIPPED, StepStatus.FAILED}),
    StepStatus.PENDING: frozenset({StepStatus.RUNNING, StepStatus.SKIPPED, StepStatus.FAILED}),
    # running -> running is a retry (or a redelivery resuming the step).
    StepStatus.RUNNING: frozenset({StepStatus.RUNNING, StepStatus.COMPLETED, StepStatus.FAILED}),
    # A failed row of an execution still running (its worker died before finishing it) runs again.
    StepStatus.FAILED: frozenset({StepStatus.RUNNING, StepStatus.FAILED}),
    StepStatus.COMPLETED: frozenset(),
    StepStatus.SKIPPED: frozenset(),
}
"""Which status a step row may take next, given the one it has. Completed and skipped are final:
a completed step is never run again."""

EXECUTION_TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    ExecutionStatus.PENDING: frozenset(
        {ExecutionStatus.RUNNING, ExecutionStatus.CANCELLED, ExecutionStatus.FAILED}
    ),
    # running -> running: a redelivery (a new lease and fencing token). running -> waiting: a
    # step parked it; running -> pending: it parked on a wait already met (an early event).
    ExecutionStatus.RUNNING: frozenset(
        {
            ExecutionStatus.RUNNING,
            ExecutionStatus.WAITING,
            ExecutionStatus.PENDING,
            *FINAL_STATUSES,
        },
    ),
    # Woken (timer or event: the one conditional UPDATE that flips it queues it), or cancelled.
    ExecutionStatus.WAITING: frozenset({ExecutionStatus.PENDING, ExecutionStatus.CANCELLED}),
    ExecutionStatus.COMPLETED: frozenset(),
    ExecutionStatus.FAILED: frozenset(),
    ExecutionStatus.CANCELLED: frozenset(),
}


class InvalidTransition(ValueError):
    """A status change the tables above do not allow: a bug in the engine, never user input."""


def check_step_transition(current: StepStatus | None, new: StepStatus) -> None:
    if new not in STEP_TRANSITIONS[current]:
        raise InvalidTransition(f"a step cannot go from {current or 'no row'} to {new}")


def check_execution_transition(current: ExecutionStatus, new: ExecutionStatus) -> None:
    if new not in EXECUTION_TRANSITIONS[current]:
        raise InvalidTransition(f"an execution cannot go from {current} to {new}")
