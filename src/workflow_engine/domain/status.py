"""Execution and step statuses and the transitions allowed between them."""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


FINAL_STATUSES = frozenset(
    {ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)

EXECUTION_TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    ExecutionStatus.PENDING: frozenset(
        {ExecutionStatus.RUNNING, ExecutionStatus.CANCELLED, ExecutionStatus.FAILED}
    ),
    # running -> running is a re-claim after a lost lease (new fencing token).
    ExecutionStatus.RUNNING: frozenset(
        {ExecutionStatus.RUNNING, *FINAL_STATUSES},
    ),
    ExecutionStatus.COMPLETED: frozenset(),
    ExecutionStatus.FAILED: frozenset(),
    ExecutionStatus.CANCELLED: frozenset(),
}

RERUNNABLE = frozenset({ExecutionStatus.FAILED, ExecutionStatus.CANCELLED})
CANCELLABLE = frozenset({ExecutionStatus.PENDING, ExecutionStatus.RUNNING})


def can_transition(current: ExecutionStatus, target: ExecutionStatus) -> bool:
    return target in EXECUTION_TRANSITIONS[current]
