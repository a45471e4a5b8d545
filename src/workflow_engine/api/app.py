"""The ASGI application: REST API (and, later, Socket.io and the UI) over one engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from workflow_engine import bootstrap
from workflow_engine.api import errors
from workflow_engine.api.middleware import ApiGuard
from workflow_engine.api.routes import executions, system, workflows
from workflow_engine.settings import Settings
from workflow_engine.steps.registry import StepRegistry


def create_app(
    settings: Settings,
    *,
    token: str | None,
    start_workers: bool = True,
    registry: StepRegistry | None = None,
) -> FastAPI:
    """The app; the engine is built (and its workers started) when the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = await bootstrap.build(settings, registry=registry)
        app.state.engine = engine
        if start_workers:
            await engine.start_workers()
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(
        title="workflow-engine",
        summary="Runs workflows in the background with retries and live status.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.max_body_bytes = settings.max_body_bytes
    errors.install(app)
    for router in (workflows.router, executions.router, system.router):
        app.include_router(router)
    app.add_middleware(ApiGuard, token=token, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    return app
