"""`GET /metrics`: Prometheus text exposition of this process's metrics (`metrics.py`).

Open without a token, like `/api/health`: Prometheus scrapers usually cannot send one, and the
page holds only counts, durations and workflow names (no input, output, id or secret). It lies
outside `/api/`, so the token guard (`api/middleware.py`) does not apply to it. Restrict who can
reach it at the network level if workflow names are confidential."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from workflow_engine import metrics
from workflow_engine.api.deps import EngineDep

router = APIRouter(tags=["system"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def prometheus_metrics(engine: EngineDep) -> Response:
    """Prometheus metrics of this process (executions, durations, queue depth...); no token."""
    body = await metrics.render([engine.dispatch_queue, engine.execution_queue])
    return Response(body, media_type=metrics.CONTENT_TYPE_LATEST)
