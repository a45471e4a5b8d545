"""`transform`: build an output from templates (already rendered by the executor)."""

from __future__ import annotations

from typing import Any

from workflow_engine.steps.base import StepConfig, StepContext, StepType


class TransformConfig(StepConfig):
    output: Any = None


class TransformStep(StepType):
    """Build an output from templates: the rendered `output` config."""

    name = "transform"
    config_model = TransformConfig
    pure = True

    async def run(self, config: TransformConfig, ctx: StepContext) -> Any:
        return config.output
