"""Health and queue counts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from workflow_engine.api.deps import EngineDep

router = APIRouter(prefix="/api", tags=["system"])


@router.get("/health")
async def health(engine: EngineDep) -> Any:
    """Open without a token: for load balancers and `make run` users."""
    try:
        await engine.db.ping()
        database = "ok"
    except Exception as exc:
        return JSONResponse({"status": "error", "database": str(exc)}, status_code=503)
    return {"status": "ok", "mode": engine.mode, "database": database}


@router.get("/queues")
async def queues(engine: EngineDep) -> Any:
    return {
        "queues": {
            queue.name: await queue.counts()
            for queue in (engine.dispatch_queue, engine.execution_queue)
        }
    }
