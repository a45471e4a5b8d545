"""`delay`: wait, then output `{"delayedMs": ms}`."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field

from workflow_engine.steps.base import StepConfig, StepContext, StepType


class DelayConfig(StepConfig):
    ms: int = Field(ge=0, le=86_400_000)


class DelayStep(StepType):
    """Wait `ms` milliseconds; output is `{"delayedMs": ms}`.

    This `run` sleeps in-process, holding a worker slot: the executor uses it for delays shorter
    than DURABLE_DELAY_MIN_MS only. Longer ones park the execution (engine/waits.py)."""

    name = "delay"
    config_model = DelayConfig

    async def run(self, config: DelayConfig, ctx: StepContext) -> Any:
        await asyncio.sleep(config.ms / 1000)
        return {"delayedMs": config.ms}
