"""Every `/api` route of the app declares exactly one permission: a route added without one is
caught here (and the app refuses to be built, api/permissions.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI

from workflow_engine.api.middleware import OPEN_PATHS, SIGNED_PREFIXES
from workflow_engine.api.permissions import READ, SIGNED, api_routes, check_routes, declared
from workflow_engine.app import create_app
from workflow_engine.domain.access import Permission
from workflow_engine.settings import Settings


def _app(tmp_path: Path) -> FastAPI:
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    return create_app(settings, token="t")


def test_every_api_route_declares_one_permission(tmp_path: Path) -> None:
    app = _app(tmp_path)
    routes = api_routes(app)
    assert len(routes) >= 25
    undeclared = [f"{r.methods} {path}" for path, r in routes if len(declared(r)) != 1]
    assert undeclared == []
    by_route = {(m, path): declared(r)[0] for path, r in routes for m in r.methods}
    # Reads need `read`, writes something stronger; only health and readiness are public.
    for (method, path), permission in by_route.items():
        if path in OPEN_PATHS:
            assert permission is Permission.PUBLIC, path
        elif path.startswith(SIGNED_PREFIXES):
            assert permission is Permission.SIGNED, path
        elif method == "GET":
            want = Permission.ADMIN if path.startswith(("/api/keys", "/api/audit")) else "read"
            assert permission == want, (method, path)
        else:
            assert permission in (Permission.EXECUTE, Permission.OPERATE, Permission.ADMIN)
    assert by_route[("POST", "/api/workflows/{workflow_id}/execute")] is Permission.EXECUTE
    assert by_route[("POST", "/api/executions/{execution_id}/cancel")] is Permission.OPERATE
    assert by_route[("POST", "/api/executions/{execution_id}/rerun")] is Permission.OPERATE
    assert by_route[("PUT", "/api/workflows/{workflow_id}")] is Permission.ADMIN
    assert by_route[("POST", "/api/keys")] is Permission.ADMIN
    assert by_route[("POST", "/api/ui/editor")] is Permission.ADMIN
    assert by_route[("POST", "/api/hooks/{path}")] is Permission.SIGNED


def test_an_app_with_an_undeclared_api_route_is_refused() -> None:
    app = FastAPI()
    router = APIRouter(prefix="/api")

    @router.get("/forgotten")
    async def forgotten() -> None: ...

    @router.get("/fine", dependencies=[READ])
    async def fine() -> None: ...

    app.include_router(router)
    with pytest.raises(RuntimeError, match="GET /api/forgotten declares 0 permissions"):
        check_routes(app, OPEN_PATHS)


def test_signed_routes_are_exactly_those_the_guard_lets_through_without_a_key() -> None:
    """A route authenticated by its own secret must sit under the guard's signed prefixes (or
    it would be asked for a key it does not check), and every route there must check its own
    secret (or it would be open to anyone)."""
    outside = FastAPI()
    router = APIRouter(prefix="/api")

    @router.post("/elsewhere", dependencies=[SIGNED])
    async def elsewhere() -> None: ...

    outside.include_router(router)
    with pytest.raises(RuntimeError, match="POST /api/elsewhere: signed routes"):
        check_routes(outside, OPEN_PATHS, SIGNED_PREFIXES)

    inside = FastAPI()
    router = APIRouter(prefix="/api")

    @router.get("/hooks/list", dependencies=[READ])
    async def listed() -> None: ...

    inside.include_router(router)
    with pytest.raises(RuntimeError, match="GET /api/hooks/list: signed routes"):
        check_routes(inside, OPEN_PATHS, SIGNED_PREFIXES)
