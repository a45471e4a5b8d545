"""Durable waits without I/O: the status table, the wait step's config, the claim's wait time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from workflow_engine.cli import _wait_text
from workflow_engine.domain.status import (
    ExecutionStatus,
    InvalidTransition,
    check_execution_transition,
)
from workflow_engine.steps.wait import WaitConfig
from workflow_engine.storage.executions import Claim


def test_waiting_is_not_final_and_leaves_only_by_a_wake_or_a_cancel() -> None:
    waiting = ExecutionStatus.WAITING
    assert not waiting.is_final
    check_execution_transition(ExecutionStatus.RUNNING, waiting)
    check_execution_transition(waiting, ExecutionStatus.PENDING)
    check_execution_transition(waiting, ExecutionStatus.CANCELLED)
    for status in (ExecutionStatus.RUNNING, ExecutionStatus.COMPLETED, ExecutionStatus.FAILED):
        with pytest.raises(InvalidTransition):
            check_execution_transition(waiting, status)


def test_wait_config_keys_are_text_and_bounded() -> None:
    assert WaitConfig.model_validate({"event": "order.paid", "key": 42}).key == "42"
    assert WaitConfig.model_validate({"event": "e"}).model_dump() == {
        "event": "e",
        "key": "",
        "timeoutMs": None,
        "onTimeout": "fail",
    }
    for bad in (
        {"event": ""},
        {"event": "e", "key": "k" * 201},
        {"event": "e", "onTimeout": "later"},
        {"event": "e", "timeoutMs": 0},
        {"event": "e", "other": 1},
    ):
        with pytest.raises(ValidationError):
            WaitConfig.model_validate(bad)


def test_a_claim_counts_the_last_wait_up_to_the_claim() -> None:
    parked = datetime(2026, 1, 1, tzinfo=UTC)
    claim = Claim(
        execution_id="e",
        token=3,
        workflow_id="w",
        workflow_version_id="v",
        input=None,
        started_at=parked - timedelta(seconds=5),
        rerun_of_id=None,
        waited_ms=1_000,
        waiting_since=parked,
        claimed_at=parked + timedelta(seconds=2),
    )
    assert claim.waited_ms_now() == 3_000
    never = Claim("e", 1, "w", "v", None, parked, None)
    assert never.waited_ms_now() == 0


def test_the_cli_says_what_an_execution_waits_for() -> None:
    event = {"stepKey": "paid", "event": {"name": "order.paid", "key": "42"}, "until": None}
    assert _wait_text(event) == "waiting for event order.paid (key 42)"
    delay = {"stepKey": "nap", "event": None, "until": "2026-01-01T00:00:00Z"}
    assert _wait_text(delay) == "sleeping until 2026-01-01T00:00:00Z"
    approval = {
        "stepKey": "review",
        "event": None,
        "until": None,
        "approval": {"message": "Refund 30 EUR?", "onReject": "fail"},
    }
    assert _wait_text(approval) == "waiting for a decision: Refund 30 EUR?"
