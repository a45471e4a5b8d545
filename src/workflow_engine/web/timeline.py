"""The execution page's rows: every step of the pinned version in document order, each with its
row when it has run, a map step's items under it, the child execution a `workflow` step (or item)
started, and the tool calls' children of an llm step. Pure: the page's script draws the bars on a
shared time axis from these times."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ITEM_KEY = re.compile(r"^(?P<parent>[A-Za-z_][A-Za-z0-9_]*)\[(?P<index>\d+)\]$")
Row = Mapping[Any, Any]  # a step or execution row (SQLAlchemy's RowMapping, or a dict)


@dataclass
class StepView:
    key: str
    name: str
    type: str
    position: int
    """1-based place in the document (an item shows its index instead)."""
    status: str
    row: Row | None
    attempts: int
    carried: bool
    """A re-run carried this finished row over from the execution it re-runs."""
    needs: list[str] | None = None
    """Explicit `needs` (None: the step before it in the list)."""
    inner_type: str | None = None
    child_workflow: str | None = None
    child: Row | None = None
    """The newest child execution this step (or item) started."""
    tool_children: list[Row] | None = None
    """An llm step's (or item's) tool calls' child executions, oldest first; None for others."""
    index: int | None = None
    items: list[StepView] = field(default_factory=list)
    item_total: int | None = None
    """How many items the map step has, once it has rendered them."""

    @property
    def is_map(self) -> bool:
        return self.type == "map"

    def blank_item(self) -> StepView:
        """The row the page copies for an item that starts while it is open."""
        return StepView(
            key="",
            name="",
            type=self.inner_type or "",
            position=self.position,
            status="pending",
            row=None,
            attempts=0,
            carried=False,
            child_workflow=self.child_workflow,
            tool_children=[] if self.inner_type == "llm" else None,
            index=0,
        )

    @property
    def stopped(self) -> bool:
        """Failed because it was stopped (a cancel, another step's failure), not on its own."""
        error = self.row["error"] if self.row else None
        return self.status == "failed" and bool(error) and str(error).startswith("Cancelled")

    def item_counts(self) -> list[tuple[str, int]]:
        """(status, count) of a map's items: `cancelled` for items stopped, `waiting` for those
        not started yet."""
        counts: dict[str, int] = {}
        for item in self.items:
            status = "cancelled" if item.stopped else item.status
            counts[status] = counts.get(status, 0) + 1
        order = ["completed", "running", "failed", "cancelled", "skipped", "pending"]
        found = [(status, counts[status]) for status in order if counts.get(status)]
        if self.item_total is not None and self.item_total > len(self.items):
            found.append(("waiting", self.item_total - len(self.items)))
        return found


def _attempts(row: Row | None) -> int:
    return int(row["retry_count"]) + 1 if row and row["started_at"] else 0


def _carried(row: Row | None, created_at: datetime | None) -> bool:
    finished = row["completed_at"] if row else None
    return bool(created_at and finished and finished < created_at)


def build(
    definition: Mapping[str, Any],
    rows: Iterable[Row],
    children: Iterable[Row] = (),
    *,
    rerun_created_at: datetime | None = None,
) -> list[StepView]:
    """The page's rows. `rows` are the execution's step rows (items included), `children` its
    child executions oldest first, `rerun_created_at` the execution's creation time when it is a
    re-run (its carried-over rows finished before it)."""
    by_key: dict[str, Row] = {}
    items: dict[str, list[tuple[int, Row]]] = {}
    for row in rows:
        match = ITEM_KEY.match(row["step_key"])
        if match:
            items.setdefault(match["parent"], []).append((int(match["index"]), row))
        else:
            by_key[row["step_key"]] = row
    by_step: dict[str, list[Row]] = {}
    for child in children:
        by_step.setdefault(child["parent_step_key"], []).append(child)
    newest_child = {key: found[-1] for key, found in by_step.items()}

    views = []
    for position, step in enumerate(definition.get("steps", []), start=1):
        key = step["key"]
        step_row = by_key.get(key)
        config = step.get("config") or {}
        found = config.get("step") if step["type"] == "map" else None
        inner: dict[str, Any] = found if isinstance(found, dict) else {}
        child_workflow = None
        if step["type"] == "workflow":
            child_workflow = config.get("workflow")
        elif inner.get("type") == "workflow":
            child_workflow = (inner.get("config") or {}).get("workflow")
        view = StepView(
            key=key,
            name=step.get("name") or key,
            type=step["type"],
            position=position,
            status=step_row["status"] if step_row else "pending",
            row=step_row,
            attempts=_attempts(step_row),
            carried=_carried(step_row, rerun_created_at),
            needs=step.get("needs"),
            inner_type=inner.get("type") if isinstance(inner.get("type"), str) else None,
            child_workflow=child_workflow if isinstance(child_workflow, str) else None,
            child=newest_child.get(key),
            tool_children=by_step.get(key, []) if step["type"] == "llm" else None,
        )
        for index, item_row in sorted(items.get(key, []), key=lambda pair: pair[0]):
            item_key = item_row["step_key"]
            view.items.append(
                StepView(
                    key=item_key,
                    name=item_key,
                    type=view.inner_type or "",
                    position=position,
                    status=item_row["status"],
                    row=item_row,
                    attempts=_attempts(item_row),
                    carried=_carried(item_row, rerun_created_at),
                    child_workflow=view.child_workflow,
                    child=newest_child.get(item_key),
                    tool_children=by_step.get(item_key, []) if view.inner_type == "llm" else None,
                    index=index,
                )
            )
        stored = step_row["input"] if step_row else None
        if view.is_map and isinstance(stored, dict) and isinstance(stored.get("items"), list):
            view.item_total = len(stored["items"])
        views.append(view)
    return views
