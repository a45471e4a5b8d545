"""`map` steps: the inner step once per item, `parallelism` at a time, each item its own step row
(`fetch[3]`) so a redelivery or a re-run never runs a completed item again."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from workflow_engine.domain.definition import StepDefinition
from workflow_engine.domain.status import StepStatus
from workflow_engine.engine import checkpoints as cp
from workflow_engine.engine import templates
from workflow_engine.engine.attempts import validation_message
from workflow_engine.engine.branches import (
    Branches,
    Completed,
    Failed,
    Halt,
    Outcome,
    Skipped,
    StepStopped,
    Stopped,
)
from workflow_engine.errors import StepError
from workflow_engine.steps.map import MapConfig, MapItems

if TYPE_CHECKING:
    from workflow_engine.engine.executor import Executor, Run


def item_key(step_key: str, index: int) -> str:
    return f"{step_key}[{index}]"


class MapRunner:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def run(self, run: Run, step: StepDefinition, state: cp.StepState, halt: Halt) -> Outcome:
        """Run the map step's items; its own row is written `running` first, and its end is
        the caller's to write, as for any step."""
        context = self.executor.context(run)
        try:
            if not await templates.render_condition_async(step.if_, context):
                return Skipped("its condition is false")
            config = MapConfig.model_validate(step.config)
            rendered = MapItems.model_validate(
                await templates.render_async(
                    {"items": config.items, "parallelism": config.parallelism}, context
                )
            )
        except StepError as exc:
            return Failed(str(exc))
        except ValidationError as exc:
            return Failed(validation_message("map", exc))
        state.started_at = state.started_at or cp.now()
        stored = {"items": rendered.items, "parallelism": rendered.parallelism}
        await run.journal.write(cp.step_started(state, stored))
        return await self._items(run, step, state, config, rendered, halt)

    async def _items(
        self,
        run: Run,
        step: StepDefinition,
        state: cp.StepState,
        config: MapConfig,
        rendered: MapItems,
        outer: Halt,
    ) -> Outcome:
        halt = Halt(outer)
        items = rendered.items
        outputs: list[Any] = [None] * len(items)
        states = [run.state(self._ref(state.ref, index)) for index in range(len(items))]
        todo = []
        for index, item_state in enumerate(states):
            if item_state.status in (StepStatus.COMPLETED, StepStatus.SKIPPED):
                outputs[index] = run.previous[item_state.ref.key]["output"]
            else:
                todo.append(index)
        todo.reverse()
        branches: Branches[int] = Branches()
        failure: str | None = None
        while True:
            started = 0
            while todo and not halt.is_set and len(branches) < rendered.parallelism:
                index = todo.pop()
                branches.start(index, self._item(run, config, states[index], items[index], halt))
                started += 1
            if not branches:
                break
            if not started:
                await run.journal.flush()
            for index, outcome in await branches.next():
                item_state = states[index]
                if isinstance(outcome, Completed):
                    outputs[index] = outcome.output
                    run.journal.defer(cp.step_completed(item_state, outcome.output))
                elif isinstance(outcome, Skipped):
                    run.journal.defer(cp.step_skipped(item_state, outcome.reason))
                elif isinstance(outcome, Failed):
                    run.journal.defer(
                        cp.step_failed(item_state, outcome.stored_input, outcome.error)
                    )
                    if failure is None:
                        failure = f"item {index} failed: {outcome.error}"
                        halt.set(f"Cancelled: item {index} of step '{state.ref.name}' failed")
        for item_state in states:
            if item_state.status == StepStatus.RUNNING:
                run.journal.defer(cp.step_stopped(item_state, halt.reason or "Stopped"))
        if failure is not None:
            return Failed(failure, {"items": items, "parallelism": rendered.parallelism})
        if outer.is_set:
            return Stopped()
        return Completed(outputs)

    async def _item(
        self, run: Run, config: MapConfig, state: cp.StepState, item: Any, halt: Halt
    ) -> Outcome:
        index = state.ref.index
        attempt = self.executor.attempt(run, config.step, halt, {"item": item, "index": index})
        try:
            return await self.executor.steps.run(config.step, state, attempt)
        except StepStopped:
            return Stopped()

    @staticmethod
    def _ref(parent: cp.StepRef, index: int) -> cp.StepRef:
        return cp.StepRef(
            key=item_key(parent.key, index),
            step_id=parent.step_id,
            position=parent.position,
            name=f"{parent.name}[{index}]",
            index=index,
        )
