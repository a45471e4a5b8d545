"""The workflow page's picture of a definition: steps as boxes in columns by dependency depth
(a step sits one column right of the deepest step it needs), arrows for the dependencies. Pure
layout, no I/O: the template draws the SVG from these coordinates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from workflow_engine.domain.definition import StepDefinition, step_dependencies

NODE_W = 212
NODE_H = 58
COL_GAP = 72  # room for the arrows between columns
ROW_GAP = 20
MARGIN = 12
STACK = 5  # how far a map step's "stack of cards" sticks out behind it
NAME_CHARS = 24  # what fits on a box's first line at 13px; longer names end in an ellipsis
DETAIL_CHARS = 28


@dataclass(frozen=True)
class Node:
    key: str
    name: str
    """What the box says: the step's name, or its key (cut to fit; `title` has all of it)."""
    title: str
    type: str
    kind: str
    """`step`, `map` or `workflow`: how the box is drawn."""
    detail: str
    """The second line: the type (after the key when the step has a name), `map of http`, or
    `workflow →` (the child's name follows)."""
    child: str | None
    """For a workflow step, the child workflow's name (a link when it is not a template)."""
    child_link: str | None
    conditional: bool
    column: int
    x: int
    y: int


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: str
    """SVG path data, from the middle of the source's right side to the target's left side."""


@dataclass(frozen=True)
class Graph:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int
    node_w: int = NODE_W
    node_h: int = NODE_H
    stack: int = STACK


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def depths(deps: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Each step's column: 0 without dependencies, else one more than its deepest dependency.
    `deps` must be acyclic (saved definitions are)."""
    found: dict[str, int] = {}
    for start in deps:
        stack = [start]
        while stack:
            key = stack[-1]
            missing = [d for d in deps[key] if d not in found and d in deps]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            found[key] = 1 + max((found[d] for d in deps[key] if d in found), default=-1)
    return found


def _describe(step: StepDefinition) -> tuple[str, str, str | None]:
    """(kind, second line, child workflow name) of one step."""
    if step.type == "map":
        inner = step.config.get("step")
        inner_type = inner.get("type") if isinstance(inner, dict) else None
        return "map", f"map of {inner_type}" if isinstance(inner_type, str) else "map", None
    if step.type == "workflow":
        child = step.config.get("workflow")
        return "workflow", "workflow →", child if isinstance(child, str) else None
    # A named step shows its key too: `needs` and templates speak of keys.
    return "step", f"{step.key} · {step.type}" if step.name else step.type, None


def layout(definition: dict[str, Any]) -> Graph | None:
    """The graph of a stored definition, or None when it has no steps we can read."""
    try:
        steps = [StepDefinition.model_validate(s) for s in definition.get("steps") or []]
    except ValidationError:
        return None
    if not steps:
        return None
    deps = step_dependencies(steps)
    column_of = depths(deps)
    order = {step.key: i for i, step in enumerate(steps)}
    columns: dict[int, list[StepDefinition]] = {}
    for step in steps:
        columns.setdefault(column_of[step.key], []).append(step)

    # Column by column, a step sits near the steps it needs (the mean of their rows), so the
    # arrows mostly run straight; ties keep the document's order.
    row_of: dict[str, float] = {}
    for column in sorted(columns):
        members = columns[column]
        members.sort(
            key=lambda s: (
                sum(row_of[d] for d in deps[s.key]) / len(deps[s.key])
                if deps[s.key]
                else float(order[s.key]),
                order[s.key],
            )
        )
        for row, step in enumerate(members):
            row_of[step.key] = float(row)

    tallest = max(len(members) for members in columns.values())
    height = MARGIN * 2 + STACK + tallest * NODE_H + (tallest - 1) * ROW_GAP
    width = MARGIN * 2 + STACK + len(columns) * NODE_W + (len(columns) - 1) * COL_GAP
    nodes: dict[str, Node] = {}
    for column, members in columns.items():
        # Each column centred on the tallest one.
        used = len(members) * NODE_H + (len(members) - 1) * ROW_GAP
        top = MARGIN + STACK + (height - 2 * MARGIN - STACK - used) // 2
        for row, step in enumerate(members):
            kind, detail, child = _describe(step)
            label = step.display_name
            nodes[step.key] = Node(
                key=step.key,
                name=_cut(label, NAME_CHARS),
                title=label if label == step.key else f"{label} ({step.key})",
                type=step.type,
                kind=kind,
                detail=_cut(detail, DETAIL_CHARS),
                child=_cut(child, DETAIL_CHARS - len(detail) - 1) if child else None,
                child_link=f"/workflows/{child}" if child and "{" not in child else None,
                conditional=step.if_ is not None,
                column=column,
                x=MARGIN + column * (NODE_W + COL_GAP),
                y=top + row * (NODE_H + ROW_GAP),
            )

    # Several arrows into (or out of) one box meet its side at spread points, in the order of
    # the boxes at their other end, so they neither cross there nor hide each other's heads.
    pairs = [(need, step.key) for step in steps for need in deps[step.key]]
    outs: dict[str, list[str]] = {}
    ins: dict[str, list[str]] = {}
    for source_key, target_key in pairs:
        outs.setdefault(source_key, []).append(target_key)
        ins.setdefault(target_key, []).append(source_key)
    for keys in (*outs.values(), *ins.values()):
        keys.sort(key=lambda k: (nodes[k].y, order[k]))

    def attach(node: Node, index: int, count: int) -> int:
        return node.y + round(NODE_H * (index + 1) / (count + 1))

    edges = []
    for source_key, target_key in pairs:
        source, target = nodes[source_key], nodes[target_key]
        x1 = source.x + NODE_W
        y1 = attach(source, outs[source_key].index(target_key), len(outs[source_key]))
        x2 = target.x - 2  # the arrowhead's tip touches the box
        y2 = attach(target, ins[target_key].index(source_key), len(ins[target_key]))
        bend = max(COL_GAP // 2, (x2 - x1) // 3)
        path = f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
        edges.append(Edge(source=source_key, target=target_key, path=path))
    ordered = sorted(nodes.values(), key=lambda n: order[n.key])
    return Graph(nodes=ordered, edges=edges, width=width, height=height)
