"""`map`: run one inner step once per item of a list (the executor runs the items).

`{"items": "{{ input.urls }}", "parallelism": 5, "step": {a step without key}}`: each item runs
the inner step with `item` and `index` in its templates, is checkpointed as its own step row
(`fetch[3]`) and never runs again once completed; the output is the list of item outputs in item
order. An item that fails after its retries fails the map step.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from workflow_engine.steps.base import StepConfig, StepContext, StepType

MAX_ITEMS = 10_000
DEFAULT_PARALLELISM = 5


class InnerStep(StepConfig):
    """The step each item runs: a workflow step without `key` and `needs`."""

    type: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=200)
    if_: str | bool | None = Field(default=None, alias="if")
    config: dict[str, Any] = Field(default_factory=dict)
    retryMaxAttempts: int | None = Field(default=None, ge=1, le=100)
    retryBackoffMs: int | None = Field(default=None, ge=0, le=3_600_000)
    timeoutMs: int | None = Field(default=None, ge=1, le=86_400_000)

    model_config = {**StepConfig.model_config, "populate_by_name": True}


class MapConfig(StepConfig):
    items: Any = Field(description="A list, or a template that renders to one")
    parallelism: int | str = Field(
        default=DEFAULT_PARALLELISM, description="Items run at the same time (1-100)"
    )
    step: InnerStep


class MapItems(StepConfig):
    """The map's rendered `items` and `parallelism` (the inner step renders per item)."""

    items: list[Any] = Field(max_length=MAX_ITEMS)
    parallelism: int = Field(ge=1, le=100)


class MapStep(StepType):
    """Run a step once per item of a list, a few at a time; output the list of their outputs."""

    name = "map"
    config_model = MapConfig

    async def run(self, config: Any, ctx: StepContext) -> Any:
        raise RuntimeError("map steps are run by the executor, item by item")
