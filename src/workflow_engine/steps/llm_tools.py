"""Workflows as tools for the `llm` step (`"tools": [...]`, `"maxTurns"`; DESIGN.md section 14).

Each named workflow is offered to the model as a function tool: its parameters are the
workflow's `inputSchema` (`{"type": "object"}` without one), its description the workflow's.
The loop asks the model; while it answers with tool calls, each call runs as a child execution
of that workflow (input = the call's arguments) and its output, or its error, goes back to the
model as the tool's result; it ends at an answer without tool calls, or fails (not retried) when
the model still calls tools on its `maxTurns`-th turn.

Checkpoints: every model turn that called tools, and every tool call's result, is saved on the
step's row (`progress`) before the loop goes on. A later try or delivery of the step replays
them instead of asking the model or running a tool again; a call whose child was started but
not saved finds that child by its idempotency key and joins it (engine/children.py). Only the
final turn is asked again after a crash that came before the step's end was stored.

Arguments that are not JSON, or do not match the tool's `inputSchema`, start no child: the tool
result tells the model what was wrong, and it may try again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from workflow_engine.domain.json_schema import first_mismatch
from workflow_engine.errors import NonRetryableStepError

from .base import StepContext, ToolRunner, ToolWorkflow

__all__ = ["Ask", "ToolCall", "run_with_tools"]

DEFAULT_MAX_TURNS = 10
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_-]")
_NAME_CHARS = 64
_ANY_OBJECT: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True)
class ToolCall:
    """One tool call of a model's answer."""

    id: str
    name: str
    arguments: str


Ask = Callable[
    [list[dict[str, Any]], list[dict[str, Any]], int],
    Awaitable[tuple[dict[str, Any], list[ToolCall]]],
]
"""ask(messages, tools, turn): one model request; the step's answer dict (content, model,
finishReason, usage) and the tool calls in it. `turn` counts from 0."""


async def run_with_tools(
    tool_names: list[str],
    max_turns: int,
    messages: list[dict[str, Any]],
    ctx: StepContext,
    ask: Ask,
) -> dict[str, Any]:
    """The final answer, with `turns` (model requests) and `toolCalls`, usage summed over all
    the turns."""
    if ctx.tools is None or ctx.save_progress is None:
        raise NonRetryableStepError("tools cannot be used here")
    offered = await _offer(tool_names, ctx.tools)
    specs = [_spec(function, workflow) for function, workflow in offered.items()]
    progress = _Progress.load(ctx.progress)
    sent = list(messages)
    turn = 0
    while True:
        if turn < len(progress.turns):
            stored = progress.turns[turn]  # asked by an earlier try or delivery
        else:
            answer, calls = await ask(sent, specs, turn)
            if not calls:
                return _final(answer, progress, turn + 1)
            if turn + 1 >= max_turns:
                raise NonRetryableStepError(
                    f"the model still called tools on its last turn (maxTurns {max_turns})"
                )
            stored = {
                "message": _assistant(answer, calls),
                "usage": answer.get("usage"),
                "model": answer.get("model"),
            }
            progress.turns.append(stored)
            called = ", ".join(call.name for call in calls)
            await ctx.save_progress(
                progress.dump(), f"Model turn {turn + 1} called {len(calls)} tool(s): {called}"
            )
        sent.append(stored["message"])
        for index, call in enumerate(stored["message"].get("tool_calls") or ()):
            key = f"{turn}.{index}"
            result = progress.calls.get(key)
            if result is None:
                result = await _call(offered, call, key, ctx.tools)
                progress.calls[key] = result
                await ctx.save_progress(progress.dump(), _call_text(result))
            sent.append({"role": "tool", "tool_call_id": call["id"], "content": result["content"]})
        turn += 1


@dataclass
class _Progress:
    turns: list[dict[str, Any]]
    """The model turns that called tools: {message (the assistant's), usage, model}."""
    calls: dict[str, dict[str, Any]]
    """By `{turn}.{index}`: {name, executionId, status, content (what the model was told)}."""

    @classmethod
    def load(cls, stored: Any) -> _Progress:
        if isinstance(stored, dict):
            return cls(list(stored.get("turns") or []), dict(stored.get("calls") or {}))
        return cls([], {})

    def dump(self) -> dict[str, Any]:
        return {"turns": self.turns, "calls": self.calls}


async def _offer(names: list[str], runner: ToolRunner) -> dict[str, ToolWorkflow]:
    """The tools by function name: the workflow's name, with what a function name cannot hold
    replaced by `_` (and a suffix when two come out the same)."""
    offered: dict[str, ToolWorkflow] = {}
    for name in names:
        workflow = await runner.describe(name)
        base = _NOT_IN_NAME.sub("_", workflow.name)[:_NAME_CHARS] or "tool"
        function, n = base, 1
        while function in offered:
            n += 1
            function = f"{base[: _NAME_CHARS - len(str(n)) - 1]}_{n}"
        offered[function] = workflow
    return offered


def _spec(function: str, workflow: ToolWorkflow) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": function,
            "description": workflow.description or f"Runs the workflow '{workflow.name}'",
            "parameters": workflow.input_schema or _ANY_OBJECT,
        },
    }


def _assistant(answer: dict[str, Any], calls: list[ToolCall]) -> dict[str, Any]:
    """The assistant message as it is sent back to the model on the next turns."""
    return {
        "role": "assistant",
        "content": answer.get("content") or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in calls
        ],
    }


async def _call(
    offered: dict[str, ToolWorkflow], call: dict[str, Any], key: str, runner: ToolRunner
) -> dict[str, Any]:
    function = call["function"]["name"]
    workflow = offered.get(function)
    if workflow is None:
        return _refused(function, f"there is no tool named {function!r}")
    try:
        arguments = json.loads(call["function"]["arguments"] or "{}")
    except ValueError as exc:
        return _refused(workflow.name, f"the arguments are not JSON: {exc}")
    problem = first_mismatch(arguments, workflow.input_schema or _ANY_OBJECT)
    if problem is not None:
        return _refused(workflow.name, f"the arguments do not match the tool's schema: {problem}")
    ended = await runner.run(workflow.name, arguments, key)
    if ended.status == "completed":
        content = json.dumps(ended.output)
    else:
        content = json.dumps({"error": f"the tool's execution {ended.status}: {ended.error}"})
    return {
        "name": workflow.name,
        "executionId": ended.execution_id,
        "status": ended.status,
        "content": content,
    }


def _refused(name: str, error: str) -> dict[str, Any]:
    return {
        "name": name,
        "executionId": None,
        "status": "invalid",
        "content": json.dumps({"error": error}),
    }


def _call_text(result: dict[str, Any]) -> str:
    if result["executionId"] is None:
        return f"Tool call {result['name']} refused: {json.loads(result['content'])['error']}"
    return f"Tool call {result['name']} ({result['executionId']}) {result['status']}"


def _final(answer: dict[str, Any], progress: _Progress, turns: int) -> dict[str, Any]:
    usages = [turn.get("usage") for turn in progress.turns] + [answer.get("usage")]
    calls = [
        progress.calls[key]
        for key in sorted(progress.calls, key=lambda k: tuple(int(p) for p in k.split(".")))
    ]
    return {
        **answer,
        "usage": _summed(usages),
        "turns": turns,
        "toolCalls": [
            {"name": c["name"], "executionId": c["executionId"], "status": c["status"]}
            for c in calls
        ],
    }


def _summed(usages: list[Any]) -> dict[str, int | None]:
    total: dict[str, int | None] = {}
    for field in ("promptTokens", "completionTokens", "totalTokens"):
        values = [u.get(field) for u in usages if isinstance(u, dict)]
        known = [v for v in values if isinstance(v, int)]
        total[field] = sum(known) if known else None
    return total
