"""Transition functions (engine/checkpoints.py) and the status tables they are checked against."""

from __future__ import annotations

import pytest

from workflow_engine.domain.status import (
    EventType,
    ExecutionStatus,
    InvalidTransition,
    StepStatus,
    check_execution_transition,
    check_step_transition,
)
from workflow_engine.engine import checkpoints as cp

REF = cp.StepRef(key="fetch[3]", step_id="s1", position=2, name="fetch[3]", index=3)


def test_a_first_start_inserts_the_row_with_the_attempt() -> None:
    state = cp.StepState(REF, started_at=cp.now())
    checkpoint = cp.step_started(state, {"url": "x"})
    assert checkpoint.step is not None and checkpoint.step.insert
    assert checkpoint.step.values["status"] == "running"
    assert checkpoint.step.values["retry_count"] == 0
    [(event, fields)] = checkpoint.events
    assert event is EventType.STEP_STARTED
    assert fields == {"stepId": "s1", "stepKey": "fetch[3]", "index": 3, "attempt": 1}
    assert checkpoint.logs[0].message == "Step 'fetch[3]' started"


def test_a_retry_updates_the_row_and_says_when_it_goes_on() -> None:
    state = cp.StepState(REF, status=StepStatus.RUNNING, attempt=2, started_at=cp.now())
    checkpoint = cp.step_retrying(state, None, "HTTP 503", 3, 2000)
    assert checkpoint.step is not None and not checkpoint.step.insert
    assert checkpoint.step.values["retry_count"] == 2
    assert checkpoint.events[0][0] is EventType.STEP_RETRYING
    assert checkpoint.events[0][1]["nextDelayMs"] == 2000
    assert checkpoint.logs[0].level == "warn"
    assert "(attempt 2/3)" in checkpoint.logs[0].message


def test_completed_and_skipped_are_final() -> None:
    done = cp.StepState(REF, status=StepStatus.COMPLETED, started_at=cp.now())
    with pytest.raises(InvalidTransition):
        cp.step_started(done, None)
    skipped = cp.StepState(REF, status=StepStatus.SKIPPED)
    with pytest.raises(InvalidTransition):
        cp.step_stopped(skipped, "Cancelled")


def test_the_tables() -> None:
    check_step_transition(None, StepStatus.FAILED)  # a template error before the start
    check_step_transition(StepStatus.FAILED, StepStatus.RUNNING)  # a redelivery runs it again
    with pytest.raises(InvalidTransition):
        check_step_transition(StepStatus.COMPLETED, StepStatus.RUNNING)
    check_execution_transition(ExecutionStatus.RUNNING, ExecutionStatus.RUNNING)
    with pytest.raises(InvalidTransition):
        check_execution_transition(ExecutionStatus.COMPLETED, ExecutionStatus.RUNNING)


def test_finishing_an_execution() -> None:
    started = cp.now()
    failed = cp.execution_finished(ExecutionStatus.FAILED, started, error="Step 'x' failed: boom")
    assert failed.finish is not None and failed.finish.status is ExecutionStatus.FAILED
    assert failed.events[0][0] is EventType.FAILED
    assert failed.events[0][1]["error"] == "Step 'x' failed: boom"
    assert failed.logs[0].level == "error"
    done = cp.execution_finished(ExecutionStatus.COMPLETED, started, output=[1, 2])
    assert done.events[0][1]["output"] == [1, 2]
    assert cp.execution_started("workflow 'w' v1", 2, {}).events == ()
