"""The step graph of a workflow version and which steps can start (DESIGN.md section 14). Pure.

A step depends on its `needs`, or on the step before it in the list when it has none. It is
ready when every dependency has finished. A ready step with explicit `needs` that were all
skipped is skipped too (so `if` on two branches plus a join is an if/else); a step without
`needs` runs after the previous one whatever that one's status, as steps always did.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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
    dependents: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """The reverse of `dependencies`: the steps that wait for each step."""
    positions: Mapping[str, int] = field(default_factory=dict)
    """Each step's place in the list (ready steps start in that order)."""

    @classmethod
    def of(cls, steps: Iterable[StepDefinition]) -> StepGraph:
        ordered = list(steps)
        dependencies = step_dependencies(ordered)
        dependents: dict[str, list[str]] = {step.key: [] for step in ordered}
        for key, deps in dependencies.items():
            for dep in deps:
                dependents[dep].append(key)
        frozen = {key: tuple(keys) for key, keys in dependents.items()}
        positions = {step.key: i for i, step in enumerate(ordered)}
        return cls(tuple(ordered), dependencies, frozen, positions)

    def tracker(self, finished: Mapping[str, StepStatus]) -> ReadySteps:
        """Which steps can start, from the steps `finished` before (a redelivery, a re-run)."""
        return ReadySteps(self, finished)

    def readiness(self, step: StepDefinition, statuses: Mapping[str, StepStatus]) -> Readiness:
        """Whether `step` can start, given the statuses of the steps that have finished."""
        deps = self.dependencies[step.key]
        if any(statuses.get(dep) not in FINISHED for dep in deps):
            return Readiness.WAIT
        if step.needs and all(statuses[dep] == StepStatus.SKIPPED for dep in deps):
            return Readiness.SKIP
        return Readiness.RUN

    def last_completed(self, statuses: Mapping[str, StepStatus]) -> StepDefinition | None:
        """The last step in list order that completed (the execution's default output)."""
        for step in reversed(self.steps):
            if statuses.get(step.key) == StepStatus.COMPLETED:
                return step
        return None


class ReadySteps:
    """The steps of one run that can start, kept up to date as steps finish: each finish looks
    only at the steps that wait for it, so a run of n steps costs O(n + edges) in all."""

    def __init__(self, graph: StepGraph, finished: Mapping[str, StepStatus]) -> None:
        self.graph = graph
        self.statuses: dict[str, StepStatus] = {
            key: status for key, status in finished.items() if status in FINISHED
        }
        self._position = graph.positions  # built once per version, not per run
        self._unmet = {
            step.key: sum(dep not in self.statuses for dep in graph.dependencies[step.key])
            for step in graph.steps
            if step.key not in self.statuses
        }
        self._ready = [self._position[key] for key, unmet in self._unmet.items() if not unmet]
        self._ready.sort()

    def take(self) -> tuple[StepDefinition, Readiness] | None:
        """The first step in list order whose needs are all met (now started), if any."""
        if not self._ready:
            return None
        step = self.graph.steps[self._ready.pop(0)]
        del self._unmet[step.key]
        return step, self.graph.readiness(step, self.statuses)

    def finished(self, key: str, status: StepStatus) -> None:
        """`key` completed or was skipped: the steps waiting only for it become ready."""
        self.statuses[key] = status
        for dependent in self.graph.dependents[key]:
            if dependent in self._unmet:
                self._unmet[dependent] -= 1
                if not self._unmet[dependent]:
                    bisect.insort(self._ready, self._position[dependent])

    def last_completed(self) -> StepDefinition | None:
        return self.graph.last_completed(self.statuses)
