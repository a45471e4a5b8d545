"""`workflow`: run another workflow as a child execution and output the child's output."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from workflow_engine.errors import NonRetryableStepError
from workflow_engine.steps.base import StepConfig, StepContext, StepType


class WorkflowConfig(StepConfig):
    workflow: str = Field(min_length=1, max_length=200, description="The child's id or name")
    input: Any = Field(default_factory=dict, description="The child execution's input")


class WorkflowStep(StepType):
    """Run a sub-workflow: a child execution, linked to this step, whose output is this step's."""

    name = "workflow"
    config_model = WorkflowConfig

    async def run(self, config: WorkflowConfig, ctx: StepContext) -> Any:
        if ctx.run_child is None:
            raise NonRetryableStepError("sub-workflows cannot run here")
        return await ctx.run_child(config.workflow, config.input)
