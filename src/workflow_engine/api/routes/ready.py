"""Readiness (`GET /api/ready`): for a load balancer or Kubernetes' readiness probe."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from workflow_engine import readiness
from workflow_engine.api.deps import EngineDep

router = APIRouter(prefix="/api", tags=["system"])


@router.get(
    "/ready",
    responses={503: {"description": "A dependency did not answer: `detail` says which and why"}},
)
async def ready(engine: EngineDep) -> Any:
    """Open without a token. 200 when the database answers (and Redis, in the distributed mode),
    each within 2 s; otherwise 503 with the reason. `/api/health` only says the process is up."""
    result = await readiness.check(engine.readiness_probes)
    if not result.ready:
        return JSONResponse({"detail": result.reason, "checks": result.checks}, status_code=503)
    return {"status": "ready", "mode": engine.mode, "checks": result.checks}
