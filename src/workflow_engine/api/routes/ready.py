"""Readiness (`GET /api/ready`): for a load balancer or Kubernetes' readiness probe."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from workflow_engine import readiness
from workflow_engine.api.deps import EngineDep
from workflow_engine.api.permissions import PUBLIC
from workflow_engine.api.routes import api_router
from workflow_engine.api.schemas import ErrorResponse, Ready

# Open (api/middleware.py OPEN_PATHS): the route documents its own answers.
router = api_router("system", open_routes=True)


@router.get(
    "/ready",
    response_model=Ready,
    dependencies=[PUBLIC],
    responses={
        503: {
            "model": ErrorResponse,
            "description": "A dependency did not answer: `detail` says which and why (the "
            "body also holds `checks`, each dependency's `ok` or failure)",
        }
    },
)
async def ready(engine: EngineDep) -> Any:
    """Open without a token. 200 when the database answers (and Redis, in the distributed mode),
    each within 2 s; otherwise 503 with the reason. `/api/health` only says the process is up."""
    result = await readiness.check(engine.readiness_probes)
    if not result.ready:
        return JSONResponse({"detail": result.reason, "checks": result.checks}, status_code=503)
    return {"status": "ready", "mode": engine.mode, "checks": result.checks}
