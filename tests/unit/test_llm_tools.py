"""The llm step's tool loop (steps/llm_tools.py) without I/O: a scripted model (`ask`) and tool
runner. What it sends back to the model, what it saves as it goes, and how it resumes from what
an earlier try saved."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from workflow_engine.errors import NonRetryableStepError
from workflow_engine.steps.base import ChildResult, StepContext, ToolWorkflow
from workflow_engine.steps.llm_tools import ToolCall, run_with_tools

USAGE = {"promptTokens": 5, "completionTokens": 1, "totalTokens": 6}


class Runner:
    def __init__(self, schemas: dict[str, dict[str, Any] | None]) -> None:
        self.schemas = schemas
        self.runs: list[tuple[str, Any, str]] = []

    async def describe(self, workflow: str) -> ToolWorkflow:
        if workflow not in self.schemas:
            raise NonRetryableStepError(f"tools: no workflow {workflow!r}")
        return ToolWorkflow(workflow, None, self.schemas[workflow])

    async def run(self, workflow: str, input: Any, call_key: str) -> ChildResult:
        self.runs.append((workflow, input, call_key))
        return ChildResult(f"child-{call_key}", "completed", {"got": input})


class Model:
    """Answers in order; records the messages of every request."""

    def __init__(self, *answers: list[ToolCall]) -> None:
        self.answers = list(answers)
        self.sent: list[list[dict[str, Any]]] = []

    async def __call__(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], turn: int
    ) -> tuple[dict[str, Any], list[ToolCall]]:
        self.sent.append(json.loads(json.dumps(messages)))
        calls = self.answers.pop(0)
        content = "" if calls else "final"
        return {"content": content, "model": "m", "usage": USAGE}, calls


def context(runner: Runner, saved: list[Any], progress: Any = None) -> StepContext:
    async def save(value: Any, message: str | None) -> None:
        saved.append(json.loads(json.dumps(value)))

    return StepContext(
        execution_id="e1",
        workflow_id="w1",
        step_key="ask",
        attempt=1,
        http=httpx.AsyncClient(),
        log=lambda *_: None,  # type: ignore[arg-type,return-value]
        progress=progress,
        save_progress=save,
        tools=runner,
    )


USER = [{"role": "user", "content": "hi"}]


async def test_tool_names_become_function_names_and_usage_is_summed() -> None:
    runner = Runner({"look up": None, "look?up": {"type": "object"}})
    model = Model([ToolCall("c1", "look_up", '{"a": 1}'), ToolCall("c2", "look_up_2", "{}")], [])
    saved: list[Any] = []
    output = await run_with_tools(["look up", "look?up"], 10, USER, context(runner, saved), model)
    assert runner.runs == [("look up", {"a": 1}, "0.0"), ("look?up", {}, "0.1")]
    assert output["turns"] == 2 and output["content"] == "final"
    assert output["usage"] == {"promptTokens": 10, "completionTokens": 2, "totalTokens": 12}
    assert [c["executionId"] for c in output["toolCalls"]] == ["child-0.0", "child-0.1"]
    assert len(saved) == 3  # the turn, then each call


async def test_a_resumed_loop_asks_no_saved_turn_and_runs_no_saved_call() -> None:
    runner = Runner({"t": None})
    first = Model([ToolCall("c1", "t", '{"n": 1}'), ToolCall("c2", "t", '{"n": 2}')])
    saved: list[Any] = []
    with pytest.raises(IndexError):  # the "crash": the model is asked a second time
        await run_with_tools(["t"], 10, USER, context(runner, saved), first)
    # As if the process died after the first call's result was saved, during the second call.
    after_first_call = saved[1]
    again = Runner({"t": None})
    model = Model([])
    output = await run_with_tools(["t"], 10, USER, context(again, [], after_first_call), model)
    assert again.runs == [("t", {"n": 2}, "0.1")]  # joins or starts only the second call
    [messages] = model.sent
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert messages[2]["content"] == json.dumps({"got": {"n": 1}})
    assert output["turns"] == 2


async def test_max_turns_stops_before_running_the_last_turns_calls() -> None:
    runner = Runner({"t": None})
    model = Model([ToolCall("c1", "t", "{}")], [ToolCall("c2", "t", "{}")])
    with pytest.raises(NonRetryableStepError, match="maxTurns 2"):
        await run_with_tools(["t"], 2, USER, context(runner, []), model)
    assert [r[2] for r in runner.runs] == ["0.0"]
