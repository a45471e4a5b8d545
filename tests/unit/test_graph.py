"""The step graph (domain/graph.py) and the checks on `needs` (domain/definition.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from workflow_engine.domain.definition import WorkflowDefinition
from workflow_engine.domain.graph import Readiness, StepGraph
from workflow_engine.domain.status import StepStatus

C, S = StepStatus.COMPLETED, StepStatus.SKIPPED


def graph(*steps: dict[str, Any]) -> StepGraph:
    definition = WorkflowDefinition(name="g", steps=[{"type": "log", **s} for s in steps])
    return StepGraph.of(definition.steps)


def ready_keys(
    g: StepGraph, statuses: dict[str, StepStatus], started: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """What can start given `statuses`, leaving out the steps already `started`."""
    tracker = g.tracker(statuses)
    found = []
    while (item := tracker.take()) is not None:
        step, readiness = item
        if step.key not in started:
            found.append((step.key, readiness.value))
    return found


def test_the_tracker_follows_finishes() -> None:
    g = graph(
        {"key": "a", "needs": []},
        {"key": "b", "needs": []},
        {"key": "join", "needs": ["a", "b"]},
        {"key": "after"},
    )
    tracker = g.tracker({})
    assert [tracker.take()[0].key, tracker.take()[0].key] == ["a", "b"]  # type: ignore[index]
    assert tracker.take() is None
    tracker.finished("b", S)
    assert tracker.take() is None  # the join still waits for a
    tracker.finished("a", S)
    step, readiness = tracker.take()  # type: ignore[misc]
    assert (step.key, readiness) == ("join", Readiness.SKIP)  # both its needs were skipped
    tracker.finished("join", S)
    step, readiness = tracker.take()  # type: ignore[misc]
    assert (step.key, readiness) == ("after", Readiness.RUN)  # implicit: runs whatever came before
    assert tracker.last_completed() is None


def test_without_needs_steps_follow_the_list() -> None:
    g = graph({"key": "a"}, {"key": "b"}, {"key": "c"})
    assert ready_keys(g, {}) == [("a", "run")]
    assert ready_keys(g, {}, {"a"}) == []
    assert ready_keys(g, {"a": C}) == [("b", "run")]
    # A skipped previous step does not skip the next one (implicit needs).
    assert ready_keys(g, {"a": C, "b": S}) == [("c", "run")]


def test_empty_needs_start_at_once_and_a_join_waits_for_all() -> None:
    g = graph(
        {"key": "a", "needs": []},
        {"key": "b", "needs": []},
        {"key": "join", "needs": ["a", "b"]},
    )
    assert ready_keys(g, {}) == [("a", "run"), ("b", "run")]
    assert ready_keys(g, {"a": C}, {"b"}) == []
    assert ready_keys(g, {"a": C, "b": S}) == [("join", "run")]
    assert ready_keys(g, {"a": S, "b": S}) == [("join", "skip")]


def test_last_completed_in_list_order() -> None:
    g = graph({"key": "a", "needs": []}, {"key": "b", "needs": []}, {"key": "c", "needs": []})
    last = g.last_completed({"a": C, "b": C, "c": S})
    assert last is not None and last.key == "b"
    assert g.last_completed({"a": S}) is None


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"key": "a", "needs": ["a"]}], "step 'a' needs itself"),
        ([{"key": "a", "needs": ["nope"]}], "step 'a' needs 'nope', which is not a step key"),
        (
            [{"key": "a", "needs": []}, {"key": "b", "needs": ["a", "a"]}],
            "step 'b' names a step twice",
        ),
        (
            [
                {"key": "a", "needs": ["c"]},
                {"key": "b", "needs": ["a"]},
                {"key": "c", "needs": ["b"]},
            ],
            "cycle of needs: 'a' -> 'c' -> 'b' -> 'a'",
        ),
        # b needs c explicitly; c needs b implicitly (it follows b in the list).
        ([{"key": "a"}, {"key": "b", "needs": ["c"]}, {"key": "c"}], "step 'b' is part of a cycle"),
    ],
)
def test_bad_needs_name_the_step(steps: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        graph(*steps)
    assert message in str(caught.value)


def test_documents_without_needs_stay_valid_and_keep_their_shape() -> None:
    document = {"name": "old", "steps": [{"key": "a", "type": "log"}, {"key": "b", "type": "log"}]}
    definition = WorkflowDefinition.model_validate(document)
    assert definition.document() == {
        "name": "old",
        "retryMaxAttempts": 3,
        "retryBackoffMs": 1000,
        "parallelism": 10,
        "steps": [
            {"key": "a", "type": "log", "config": {}},
            {"key": "b", "type": "log", "config": {}},
        ],
    }
    assert Readiness.RUN.value == "run"
