"""Health and queue counts."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from workflow_engine.api.deps import EngineDep
from workflow_engine.api.errors import COMMON
from workflow_engine.api.routes import BEARER, api_router
from workflow_engine.api.schemas import Health, HealthError, QueueCounts

# Health is open (api/middleware.py OPEN_PATHS), so each route says what it may answer.
router = api_router("system", open_routes=True)


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": HealthError, "description": "The database cannot be reached"}},
)
async def health(engine: EngineDep) -> Any:
    """Open without a token: for load balancers and `make run` users."""
    try:
        await engine.db.ping()
        database = "ok"
    except Exception as exc:
        return JSONResponse({"status": "error", "database": str(exc)}, status_code=503)
    return {"status": "ok", "mode": engine.mode, "database": database}


@router.get("/queues", response_model=QueueCounts, responses=COMMON, dependencies=[BEARER])
async def queues(engine: EngineDep) -> Any:
    """Jobs per state in each queue."""
    return {
        "queues": {
            queue.name: await queue.counts()
            for queue in (engine.dispatch_queue, engine.execution_queue)
        }
    }
