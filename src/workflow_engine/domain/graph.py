"""The step graph of a workflow version and which steps can start (DESIGN.md section 14). Pure.

A step depends on its `needs`, or on the step before it in the list when it has none. It is
ready when every dependency has finished. A ready step with explicit `needs` that were all
skipped is skipped too (so `if` on two branches plus a join is an if/else); a step without
`needs` runs after the previous one whatever that one's status, as steps always did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from workflow_engine.domain.definition import StepDefinition, step_dependencies
from workflow_engine.domain.status import StepStatus

FINISHED = frozenset({StepStatus.COMPLETED, StepStatus.SKIPPED})


class Readiness(Enum):
    WAIT = "wait"
    RUN = "run"
    SKIP = "skip"
    """Every explicit need was skipped."""


@dataclass(frozen=True)
class StepGraph:
    steps: tuple[StepDefinition, ...]
    dependencies: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(cls, steps: Iterable[StepDefinition]) -> StepGraph:
        ordered = list(steps)
        return cls(tuple(ordered), step_dependencies(ordered))

    def readiness(self, step: StepDefinition, statuses: Mapping[str, StepStatus]) -> Readiness:
        """Whether `step` can start, given the statuses of the steps that have finished."""
        deps = self.dependencies[step.key]
        if any(statuses.get(dep) not in FINISHED for dep in deps):
            return Readiness.WAIT
        if step.needs and all(statuses[dep] == StepStatus.SKIPPED for dep in deps):
            return Readiness.SKIP
        return Readiness.RUN

    def ready(
        self, statuses: Mapping[str, StepStatus], started: Iterable[str]
    ) -> list[tuple[StepDefinition, Readiness]]:
        """The steps not yet started whose dependencies have all finished, in list order."""
        begun = set(started)
        found: list[tuple[StepDefinition, Readiness]] = []
        for step in self.steps:
            if step.key in begun or step.key in statuses:
                continue
            readiness = self.readiness(step, statuses)
            if readiness is not Readiness.WAIT:
                found.append((step, readiness))
        return found

    def last_completed(self, statuses: Mapping[str, StepStatus]) -> StepDefinition | None:
        """The last step in list order that completed (the execution's default output)."""
        for step in reversed(self.steps):
            if statuses.get(step.key) == StepStatus.COMPLETED:
                return step
        return None
