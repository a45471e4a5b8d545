"""Step types by name, each with where it came from (`builtin`, a distribution, a module).

`serve` and `workers` get theirs from `steps.plugins.load_registry` (built-ins plus plugins); a
custom launcher may still build one and `registry.register(MyStep())` on it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from workflow_engine.steps.base import StepType

BUILTIN = "builtin"


@dataclass(frozen=True)
class RegisteredStep:
    """One registered step type and its source (shown by `GET /api/step-types`)."""

    step_type: StepType
    source: str

    @property
    def name(self) -> str:
        return self.step_type.name

    @property
    def description(self) -> str:
        """The first line of the step type's class docstring ('' without one; not inherited,
        so a plugin never shows StepType's own docstring)."""
        doc = type(self.step_type).__doc__
        return inspect.cleandoc(doc).split("\n", 1)[0] if doc else ""


class StepRegistry:
    def __init__(self) -> None:
        self._types: dict[str, RegisteredStep] = {}

    def register(
        self, step_type: StepType, *, replace: bool = False, source: str | None = None
    ) -> None:
        """Add `step_type` under its `name`; `source` defaults to the module defining it."""
        existing = self._types.get(step_type.name)
        if existing is not None and not replace:
            raise ValueError(
                f"step type {step_type.name!r} is already registered (from {existing.source})"
            )
        self._types[step_type.name] = RegisteredStep(
            step_type, source or type(step_type).__module__
        )

    def get(self, name: str) -> StepType | None:
        entry = self._types.get(name)
        return entry.step_type if entry is not None else None

    def source(self, name: str) -> str | None:
        """Where the step type called `name` came from, None when there is none."""
        entry = self._types.get(name)
        return entry.source if entry is not None else None

    def names(self) -> list[str]:
        return sorted(self._types)

    def entries(self) -> list[RegisteredStep]:
        """Every registered step type, sorted by name."""
        return [self._types[name] for name in self.names()]


def default_registry() -> StepRegistry:
    """A registry holding the built-in step types only (plugins: `steps.plugins.load_registry`)."""
    from workflow_engine.steps.approval import ApprovalStep
    from workflow_engine.steps.delay import DelayStep
    from workflow_engine.steps.fail import FailStep
    from workflow_engine.steps.http import HttpStep
    from workflow_engine.steps.llm import LlmStep
    from workflow_engine.steps.log import LogStep
    from workflow_engine.steps.map import MapStep
    from workflow_engine.steps.transform import TransformStep
    from workflow_engine.steps.wait import WaitStep
    from workflow_engine.steps.workflow import WorkflowStep

    registry = StepRegistry()
    built_in = (TransformStep(), HttpStep(), DelayStep(), LogStep(), FailStep(), MapStep())
    for step_type in (*built_in, WorkflowStep(), WaitStep(), ApprovalStep(), LlmStep()):
        registry.register(step_type, source=BUILTIN)
    return registry
