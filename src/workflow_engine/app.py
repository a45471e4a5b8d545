"""The ASGI application: the REST API (`api/`), Socket.io (`/api/socket`) and the monitoring UI
(`web/`), assembled here so that neither package needs to know the other's place in it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from workflow_engine import bootstrap
from workflow_engine.api import errors
from workflow_engine.api.access import Gate
from workflow_engine.api.middleware import OPEN_PATHS, SIGNED_PREFIXES, ApiGuard
from workflow_engine.api.permissions import check_routes, document_keys
from workflow_engine.api.realtime import Realtime, SocketMount
from workflow_engine.api.routes import (
    approvals,
    audit,
    events,
    executions,
    hooks,
    keys,
    metrics,
    ready,
    stats,
    step_types,
    system,
    workflows,
)
from workflow_engine.domain.definition import WorkflowDefinition
from workflow_engine.errors import ConfigurationError, StorageError, WorkflowEngineError
from workflow_engine.settings import Settings
from workflow_engine.steps.registry import StepRegistry
from workflow_engine.web import auth_pages, execution_pages, render, workflow_pages


def create_app(
    settings: Settings,
    *,
    token: str | None,
    start_workers: bool | None = None,
    registry: StepRegistry | None = None,
    documents: Sequence[tuple[Path, dict[str, Any]]] = (),
) -> FastAPI:
    """The app; the engine is built (and its workers started) when the app starts.

    `documents` are workflow files to create or update before the workers start.
    """

    gate = Gate(token)
    realtime = Realtime(settings, gate=gate)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = await bootstrap.build(settings, registry=registry)
        app.state.engine = engine
        gate.keys = engine.keys
        engine.keys.start()
        # Before the workers start, so no event of this process's executions goes unseen.
        await realtime.start(engine.db, engine.bus, engine.keys)
        for path, document in documents:
            try:
                definition = WorkflowDefinition.model_validate(document)
                await engine.service.apply_workflow(definition)
            except StorageError:
                raise  # not the file's fault
            except (ValidationError, WorkflowEngineError) as exc:
                await engine.stop(grace_s=0)
                await realtime.stop()
                raise ConfigurationError(f"{path}: {exc}") from exc
        # Embedded: this process runs the workers too. Distributed: `workflow-engine workers` does.
        if start_workers if start_workers is not None else engine.mode == "embedded":
            await engine.start_workers()
        try:
            yield
        finally:
            try:
                await engine.stop()
            finally:
                await realtime.stop()

    app = FastAPI(
        title="workflow-engine",
        summary="Runs workflows in the background with retries and live status.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.max_body_bytes = settings.max_body_bytes
    app.state.token = token
    app.state.gate = gate
    errors.install(app)
    for router in (
        workflows.router,
        executions.router,
        approvals.router,
        events.router,
        hooks.router,
        stats.router,
        step_types.router,
        system.router,
        ready.router,
        metrics.router,
        keys.router,
        audit.router,
    ):
        app.include_router(router)
    render.install(app)
    for router in (auth_pages.router, workflow_pages.router, execution_pages.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=render.STATIC_DIR), name="static")
    # Every /api route declares its permission (api/permissions.py), or the app is not made.
    check_routes(app, OPEN_PATHS, SIGNED_PREFIXES)
    document_keys(app)
    app.add_middleware(ApiGuard, gate=gate, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    # Outermost: Socket.io answers its own path (it authenticates on connect) before the guard.
    app.add_middleware(SocketMount, realtime=realtime)
    return app
