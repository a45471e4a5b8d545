"""`fail`: always fails with its message (for tests and dead ends)."""

from __future__ import annotations

from typing import Any

from workflow_engine.errors import StepError
from workflow_engine.steps.base import StepConfig, StepContext, StepType


class FailConfig(StepConfig):
    message: str = "Step failed"


class FailStep(StepType):
    """Always fail with `message` (for tests and dead ends)."""

    name = "fail"
    config_model = FailConfig

    async def run(self, config: FailConfig, ctx: StepContext) -> Any:
        raise StepError(config.message)
