"""`wait`: park the execution until an event `POST /api/events {"name", "key", "data"}` meets it.

The executor runs it (engine/waits.py), not `run`: the execution goes `waiting`, holding no worker
slot, and resumes when the event comes (output: its `data`) or at `timeoutMs` (the step fails,
not retried, unless `"onTimeout": "continue"`: output null).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from workflow_engine.errors import NonRetryableStepError
from workflow_engine.steps.base import StepConfig, StepContext, StepType

MAX_NAME = 200


class WaitConfig(StepConfig):
    event: str = Field(min_length=1, max_length=MAX_NAME)
    key: str = Field(default="", max_length=MAX_NAME)
    timeoutMs: int | None = Field(default=None, ge=1, le=31_536_000_000)
    onTimeout: Literal["fail", "continue"] = "fail"

    @field_validator("key", mode="before")
    @classmethod
    def _key_text(cls, value: Any) -> Any:
        # `{{ input.orderId }}` keeps a number's type: the key is its text.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value


class WaitStep(StepType):
    """Wait for an event (name and key) posted to POST /api/events; output is its data."""

    name = "wait"
    config_model = WaitConfig

    async def run(self, config: WaitConfig, ctx: StepContext) -> Any:
        raise NonRetryableStepError("a wait step runs only as a step of a workflow, not in a map")
