"""Step types by name. Users add their own with `registry.register(MyStep())`."""

from __future__ import annotations

from workflow_engine.steps.base import StepType


class StepRegistry:
    def __init__(self) -> None:
        self._types: dict[str, StepType] = {}

    def register(self, step_type: StepType, *, replace: bool = False) -> None:
        if step_type.name in self._types and not replace:
            raise ValueError(f"step type {step_type.name!r} is already registered")
        self._types[step_type.name] = step_type

    def get(self, name: str) -> StepType | None:
        return self._types.get(name)

    def names(self) -> list[str]:
        return sorted(self._types)


def default_registry() -> StepRegistry:
    """A registry holding the built-in step types."""
    from workflow_engine.steps.delay import DelayStep
    from workflow_engine.steps.fail import FailStep
    from workflow_engine.steps.http import HttpStep
    from workflow_engine.steps.log import LogStep
    from workflow_engine.steps.map import MapStep
    from workflow_engine.steps.transform import TransformStep
    from workflow_engine.steps.workflow import WorkflowStep

    registry = StepRegistry()
    built_in = (TransformStep(), HttpStep(), DelayStep(), LogStep(), FailStep(), MapStep())
    for step_type in (*built_in, WorkflowStep()):
        registry.register(step_type)
    return registry
