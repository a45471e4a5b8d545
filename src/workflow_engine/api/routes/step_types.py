"""The step types this engine runs (built-in and plugins), for editors and for checking a plugin
was loaded."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from workflow_engine.api.deps import EngineDep
from workflow_engine.api.permissions import READ
from workflow_engine.api.routes import api_router

router = api_router("step types")


class StepTypeInfo(BaseModel):
    name: str = Field(description="What a step's `type` says")
    description: str = Field(description="First line of the step type's docstring")
    source: str = Field(
        description='"builtin", or the distribution (entry point) or module (STEP_MODULES) '
        "it came from"
    )
    configSchema: dict[str, Any] = Field(description="JSON schema of the step's `config`")


class StepTypeList(BaseModel):
    stepTypes: list[StepTypeInfo]


@router.get("/step-types", dependencies=[READ])
async def list_step_types(engine: EngineDep) -> StepTypeList:
    """Every step type a workflow may use, sorted by name."""
    return StepTypeList(
        stepTypes=[
            StepTypeInfo(
                name=entry.name,
                description=entry.description,
                source=entry.source,
                configSchema=entry.step_type.config_model.model_json_schema(),
            )
            for entry in engine.registry.entries()
        ]
    )
