"""Workflow versions are immutable, so workers keep the ones they run in memory."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from workflow_engine.domain.definition import WorkflowDefinition
from workflow_engine.domain.graph import StepGraph
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.db import Connection, Database


@dataclass(frozen=True)
class LoadedVersion:
    id: str
    workflow_id: str
    number: int
    definition: WorkflowDefinition
    step_ids: dict[str, str]
    graph: StepGraph = field(init=False)
    positions: dict[str, int] = field(init=False)
    """Each step's place in the document's list (its rows' `position`)."""

    def __post_init__(self) -> None:
        steps = self.definition.steps
        object.__setattr__(self, "graph", StepGraph.of(steps))
        object.__setattr__(self, "positions", dict(self.graph.positions))


class VersionCache:
    def __init__(self, db: Database, size: int = 512) -> None:
        self._db = db
        self._size = size
        self._items: OrderedDict[str, LoadedVersion] = OrderedDict()

    async def get(self, version_id: str, *, conn: Connection | None = None) -> LoadedVersion:
        """The version, from memory or loaded (through `conn` when given)."""
        cached = self._items.get(version_id)
        if cached is not None:
            self._items.move_to_end(version_id)
            return cached
        if conn is None:
            async with self._db.read() as own:
                return await self.get(version_id, conn=own)
        row = await wf_store.get_version(conn, version_id=version_id)
        step_ids = await wf_store.version_step_ids(conn, version_id)
        loaded = LoadedVersion(
            id=row["id"],
            workflow_id=row["workflow_id"],
            number=row["version"],
            definition=WorkflowDefinition.model_validate(row["definition"]),
            step_ids=step_ids,
        )
        self._items[version_id] = loaded
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return loaded
