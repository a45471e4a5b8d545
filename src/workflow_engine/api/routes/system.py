"""Health and queue counts."""

from __future__ import annotations

from typing import Any

from workflow_engine.api.deps import EngineDep
from workflow_engine.api.errors import COMMON
from workflow_engine.api.permissions import PUBLIC, READ
from workflow_engine.api.routes import api_router
from workflow_engine.api.schemas import Health, QueueCounts

# Health is open (api/middleware.py OPEN_PATHS), so each route says what it may answer.
router = api_router("system", open_routes=True)


@router.get("/health", response_model=Health, dependencies=[PUBLIC])
async def health(engine: EngineDep) -> Any:
    """Liveness, open without a token: the process answers. It checks nothing else, so that a
    database outage does not get healthy web processes restarted; `/api/ready` says whether the
    database (and Redis) answer."""
    return {"status": "ok", "mode": engine.mode}


@router.get("/queues", response_model=QueueCounts, responses=COMMON, dependencies=[READ])
async def queues(engine: EngineDep) -> Any:
    """Jobs per state in each queue."""
    return {
        "queues": {
            queue.name: await queue.counts()
            for queue in (engine.dispatch_queue, engine.execution_queue)
        }
    }
