"""Health and queue counts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from workflow_engine.api.deps import EngineDep

router = APIRouter(prefix="/api", tags=["system"])


@router.get("/health")
async def health(engine: EngineDep) -> Any:
    """Liveness, open without a token: the process answers. It checks nothing else, so that a
    database outage does not get healthy web processes restarted; `/api/ready` says whether the
    database (and Redis) answer."""
    return {"status": "ok", "mode": engine.mode}


@router.get("/queues")
async def queues(engine: EngineDep) -> Any:
    return {
        "queues": {
            queue.name: await queue.counts()
            for queue in (engine.dispatch_queue, engine.execution_queue)
        }
    }
