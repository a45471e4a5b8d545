"""`log`: write a line to the execution's log."""

from __future__ import annotations

from typing import Any, Literal

from workflow_engine.steps.base import StepConfig, StepContext, StepType


class LogConfig(StepConfig):
    message: Any
    level: Literal["info", "warn", "error", "debug"] = "info"


class LogStep(StepType):
    """Write `message` to the execution's log at `level`."""

    name = "log"
    config_model = LogConfig

    async def run(self, config: LogConfig, ctx: StepContext) -> Any:
        message = config.message if isinstance(config.message, str) else repr(config.message)
        await ctx.log(config.level, message, {"stepKey": ctx.step_key})
        return {"message": message, "level": config.level}
