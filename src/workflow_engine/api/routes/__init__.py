"""The REST API's routes, one module per resource, each on a router made by `api_router`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from workflow_engine.api.errors import COMMON
from workflow_engine.api.jsonbody import StrictJsonRoute


def operation_id(route: APIRoute) -> str:
    """The function's name: what generated clients call the operation."""
    return route.name


def api_router(tag: str, *, open_routes: bool = False) -> APIRouter:
    """A router under `/api` whose JSON bodies are parsed strictly (api/jsonbody.py).

    `open_routes`: its routes document their own security and error answers (/api/health).
    """
    return APIRouter(
        prefix="/api",
        tags=[tag],
        route_class=StrictJsonRoute,
        # Routes return serialize.py's dicts; their models check and document them, and they
        # are rendered by JSONResponse as they always were, byte for byte.
        default_response_class=JSONResponse,
        responses={} if open_routes else COMMON,
        generate_unique_id_function=operation_id,
        # A body without a Content-Type is read as JSON, as before (api/middleware.py refuses
        # any other declared type with a 415).
        strict_content_type=False,
    )
