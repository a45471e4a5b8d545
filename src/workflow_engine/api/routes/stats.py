"""Aggregates of finished executions, for the charts of /monitoring and the workflow pages."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import Query

from workflow_engine.api import serialize
from workflow_engine.api.deps import EngineDep, WorkflowFilter
from workflow_engine.api.errors import responses
from workflow_engine.api.routes import api_router
from workflow_engine.api.schemas import ExecutionStats
from workflow_engine.storage import stats as stats_store
from workflow_engine.storage import workflows as wf_store


class Window(StrEnum):
    HOUR = "1h"
    DAY = "24h"


WindowParam = Annotated[
    Window,
    Query(description="`1h`: per-minute buckets; `24h`: 15-minute buckets"),
]

router = api_router("stats")


@router.get("/stats", response_model=ExecutionStats, responses=responses(404))
async def execution_stats(
    engine: EngineDep, window: WindowParam = Window.HOUR, workflowId: WorkflowFilter = None
) -> Any:
    """Executions finished in the last hour or day: per bucket, the counts by final status and
    the p50/p95 durations; the same over the window; and per workflow, the counts and the
    failure rate. An execution counts in the bucket of its `completedAt`. With `workflowId`
    (id or name) only that workflow's; an unknown one is a 404."""
    async with engine.db.read() as conn:
        workflow_id = None
        if workflowId:
            workflow_id = str((await wf_store.get_workflow(conn, workflowId))["id"])
        found = await stats_store.execution_stats(
            conn, stats_store.WINDOWS[window.value], workflow_id=workflow_id
        )
        names = await wf_store.workflow_names(conn, set(found.workflows))
    return serialize.stats(found, workflow_id=workflow_id, names=names)
