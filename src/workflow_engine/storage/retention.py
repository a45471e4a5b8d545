"""Retention queries: finding finished executions older than a cutoff and deleting them with
their step rows, logs and events, a small batch per transaction.

What goes together, and what stays:
- Only finished executions (`completed`, `failed`, `cancelled`) whose `completed_at` is before
  the cutoff; never `pending`, `running` or any other status.
- An execution goes with its whole tree of child executions (`workflow` steps), and only once
  every execution of the tree has finished: a child is not removed while its parent stays (the
  parent's page keeps its children), and a parent whose child is still unfinished stays, with
  the child, until the child has finished. Children are found from their top-level execution.
- An execution that an unfinished re-run points at (`rerun_of_id`) stays until that re-run has
  finished. A finished re-run of a removed execution stays as it is; the database sets its
  `rerun_of_id` to null.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.domain.status import FINAL_STATUSES
from workflow_engine.storage.filters import one_of
from workflow_engine.storage.tables import (
    execution_events,
    execution_logs,
    execution_steps,
    executions,
)

FINAL = sorted(status.value for status in FINAL_STATUSES)
MAX_DEPTH = 32
"""Levels of child executions followed (sub-workflows nest at most 10 deep)."""
CHUNK = 1000
"""Ids per statement (SQLite caps the parameters of one statement)."""


@dataclass(frozen=True)
class Removed:
    """What a prune removed (or, in a dry run, would remove: executions only)."""

    executions: int = 0
    steps: int = 0
    logs: int = 0
    events: int = 0

    @property
    def rows(self) -> int:
        return self.executions + self.steps + self.logs + self.events

    def __add__(self, other: Removed) -> Removed:
        return Removed(
            self.executions + other.executions,
            self.steps + other.steps,
            self.logs + other.logs,
            self.events + other.events,
        )


@dataclass(frozen=True)
class Position:
    """Where a pass over the old executions is: the last top-level execution it looked at, in
    (completed_at, id) order. Those it kept are not looked at again in the same pass."""

    completed_at: datetime
    id: str


@dataclass(frozen=True)
class Batch:
    removed: Removed
    kept: int
    """Old finished executions looked at but kept (an unfinished child or re-run)."""
    next: Position | None
    """Where the next batch starts; None when the pass is over."""


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start : start + CHUNK])


@dataclass(frozen=True)
class Candidate:
    position: Position
    root: bool
    """A top-level execution (children go with theirs)."""
    finished: bool


async def old_executions(
    conn: AsyncConnection, *, before: datetime, after: Position | None, limit: int
) -> list[Candidate]:
    """Executions that finished before `before` (any status with a `completed_at`), oldest
    first, after `after`. The statuses and the parent link are checked by the caller: a
    condition on them here could lead a database without statistics (SQLite, unless ANALYZEd)
    to walk their indexes instead of ix_executions_completed_at_id."""
    completed_at = executions.c.completed_at
    query = select(
        completed_at,
        executions.c.id,
        executions.c.parent_execution_id.is_(None),
        executions.c.status,
    ).where(completed_at.is_not(None), completed_at < before)
    if after is not None:
        query = query.where(
            tuple_(completed_at, executions.c.id)
            > tuple_(
                literal(after.completed_at, type_=completed_at.type),
                literal(after.id, type_=executions.c.id.type),
            )
        )
    query = query.order_by(completed_at, executions.c.id).limit(limit)
    return [
        Candidate(Position(row[0], row[1]), bool(row[2]), row[3] in FINAL)
        for row in await conn.execute(query)
    ]


async def _trees(conn: AsyncConnection, roots: list[str]) -> tuple[dict[str, list[str]], set[str]]:
    """Each root's tree (the root first, then its descendants) and the roots whose tree holds
    an unfinished execution."""
    dialect = conn.dialect.name
    members: dict[str, list[str]] = {root: [root] for root in roots}
    root_of = {root: root for root in roots}
    live: set[str] = set()
    frontier = list(roots)
    for _ in range(MAX_DEPTH):
        if not frontier:
            break
        found: list[str] = []
        query = select(
            executions.c.id, executions.c.status, executions.c.parent_execution_id
        ).where(one_of(executions.c.parent_execution_id, "ids", dialect))
        for chunk in _chunks(frontier):
            for child_id, status, parent_id in await conn.execute(query, {"ids": chunk}):
                root = root_of[parent_id]
                root_of[child_id] = root
                members[root].append(child_id)
                found.append(child_id)
                if status not in FINAL:
                    live.add(root)
        frontier = found
    if frontier:
        live.update(root_of[child_id] for child_id in frontier)  # deeper than followed: keep
    every = list(root_of)
    reruns = select(executions.c.rerun_of_id).where(
        one_of(executions.c.rerun_of_id, "ids", dialect), executions.c.status.not_in(FINAL)
    )
    for chunk in _chunks(every):
        for (source_id,) in await conn.execute(reruns, {"ids": chunk}):
            live.add(root_of[source_id])
    return members, live


async def _delete(conn: AsyncConnection, ids: list[str]) -> Removed:
    """Delete the executions `ids` and every row that references them (children first, so the
    database's cascades find nothing left to do)."""
    dialect = conn.dialect.name
    counts: dict[str, int] = {"executions": 0, "steps": 0, "logs": 0, "events": 0}
    tables: list[tuple[str, Any]] = [
        ("events", execution_events),
        ("logs", execution_logs),
        ("steps", execution_steps),
    ]
    for name, table in tables:
        statement = delete(table).where(one_of(table.c.execution_id, "ids", dialect))
        for chunk in _chunks(ids):
            counts[name] += (await conn.execute(statement, {"ids": chunk})).rowcount
    statement = delete(executions).where(one_of(executions.c.id, "ids", dialect))
    for chunk in _chunks(ids):
        counts["executions"] += (await conn.execute(statement, {"ids": chunk})).rowcount
    return Removed(**counts)


async def prune_batch(
    conn: AsyncConnection,
    *,
    before: datetime,
    after: Position | None,
    limit: int,
    dry_run: bool = False,
) -> Batch:
    """Remove up to about `limit` executions (whole trees: one large tree may pass the limit)
    that finished before `before`, starting after `after`. Run it in one write transaction.
    With `dry_run`, only counts what would go."""
    candidates = await old_executions(conn, before=before, after=after, limit=limit)
    if not candidates:
        return Batch(Removed(), 0, None)
    roots = [c.position for c in candidates if c.root and c.finished]
    members, live = await _trees(conn, [root.id for root in roots])
    chosen: list[str] = []
    kept = 0
    last = candidates[-1].position
    for index, root in enumerate(roots):
        if root.id in live:
            kept += 1
            continue
        if chosen and len(chosen) + len(members[root.id]) > limit:
            last = roots[index - 1]  # the batch is full: this root opens the next one
            break
        chosen += members[root.id]
    if dry_run:
        return Batch(Removed(executions=len(chosen)), kept, last)
    return Batch(await _delete(conn, chosen) if chosen else Removed(), kept, last)
