"""Aggregates of finished executions, for the charts of /monitoring and the workflow pages."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Query, Request

from workflow_engine.api import serialize
from workflow_engine.api.deps import EngineDep, WorkflowFilter
from workflow_engine.api.errors import responses
from workflow_engine.api.permissions import READ
from workflow_engine.api.routes import api_router
from workflow_engine.api.schemas import ExecutionStats
from workflow_engine.bootstrap import Engine
from workflow_engine.storage import stats as stats_store
from workflow_engine.storage import stats_rollup
from workflow_engine.storage import workflows as wf_store


class Window(StrEnum):
    HOUR = "1h"
    DAY = "24h"


WindowParam = Annotated[
    Window,
    Query(description="`1h`: per-minute buckets; `24h`: 15-minute buckets"),
]

router = api_router("stats")
SETTLE_PER_REQUEST = 8
"""Buckets a request rolls up at most (the first requests after a start may find a day of them
to do): the others are read from the executions meanwhile."""


@router.get("/stats", response_model=ExecutionStats, responses=responses(404), dependencies=[READ])
async def execution_stats(
    request: Request,
    engine: EngineDep,
    window: WindowParam = Window.HOUR,
    workflowId: WorkflowFilter = None,
) -> Any:
    """Executions finished in the last hour or day: per bucket, the counts by final status and
    the p50/p95 durations; the same over the window; and per workflow, the counts and the
    failure rate. An execution counts in the bucket of its `completedAt`. With `workflowId`
    (id or name) only that workflow's; an unknown one is a 404."""
    period = stats_store.WINDOWS[window.value]
    now = datetime.now(UTC)
    async with engine.db.read() as conn:
        workflow_id = None
        if workflowId:
            workflow_id = str((await wf_store.get_workflow(conn, workflowId))["id"])
    await _settle(engine, period, now)
    async with engine.db.read() as conn:
        found = await stats_store.execution_stats(
            conn, period, workflow_id=workflow_id, now=now, cache=_cache(request)
        )
        names = await wf_store.workflow_names(conn, set(found.workflows))
    return serialize.stats(found, workflow_id=workflow_id, names=names)


def _cache(request: Request) -> stats_rollup.SummaryCache:
    """This app's cache of what it read of the rollup (settled buckets never change)."""
    state = request.app.state
    if not hasattr(state, "stats_cache"):
        state.stats_cache = stats_rollup.SummaryCache()
    cache: stats_rollup.SummaryCache = state.stats_cache
    return cache


async def _settle(engine: Engine, period: stats_store.StatsWindow, now: datetime) -> None:
    """Roll up the window's settled buckets that are not yet (storage/stats_rollup.py)."""
    start, _ = period.bounds(now)
    async with engine.db.read() as conn:
        todo = await stats_rollup.unsettled(conn, period.bucket, start, now)
    if todo:
        async with engine.db.write() as conn:
            await stats_rollup.settle(conn, period.bucket, todo[:SETTLE_PER_REQUEST], now)
