"""`approval`: park the execution until a person approves or rejects (or `timeoutMs` passes).

The executor runs it (engine/waits.py), not `run`: the execution goes `waiting`, holding no worker
slot, and resumes on `POST /api/executions/{id}/steps/{stepKey}/approve` or `/reject` (the
execution page's buttons). Output: `{"approved", "by", "comment", "at"}`. A rejection fails the
step (not retried) unless `"onReject": "continue"`; a timeout fails it unless `"onTimeout":
"continue"` (output null), as a `wait` step's does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from workflow_engine.errors import NonRetryableStepError
from workflow_engine.steps.base import StepConfig, StepContext, StepType

MAX_MESSAGE = 2000
MAX_COMMENT = 2000
"""A decision's comment, at most (the API refuses longer ones)."""


class ApprovalConfig(StepConfig):
    message: str = Field(min_length=1, max_length=MAX_MESSAGE)
    timeoutMs: int | None = Field(default=None, ge=1, le=31_536_000_000)
    onTimeout: Literal["fail", "continue"] = "fail"
    onReject: Literal["fail", "continue"] = "fail"

    @field_validator("message", mode="before")
    @classmethod
    def _message_text(cls, value: Any) -> Any:
        # `{{ input.amount }}` alone keeps a number's type: the message is its text.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value


class ApprovalStep(StepType):
    """Wait for a person to approve or reject; output `{"approved", "by", "comment", "at"}`."""

    name = "approval"
    config_model = ApprovalConfig

    async def run(self, config: ApprovalConfig, ctx: StepContext) -> Any:
        raise NonRetryableStepError(
            "an approval step runs only as a step of a workflow, not in a map"
        )
