"""Every error the API returns is JSON with a message a person can act on; never a 500 for input."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from workflow_engine.api.middleware import BodyTooLarge
from workflow_engine.api.schemas import ErrorResponse
from workflow_engine.errors import (
    Conflict,
    InvalidDefinition,
    InvalidInput,
    NotFound,
    StorageError,
    Unauthenticated,
    WorkflowEngineError,
)

log = logging.getLogger(__name__)


_MEANING = {
    400: "The request is malformed: its body is not JSON (or holds a number out of range), or "
    "its cursor is not one this API gave out",
    401: "Missing or invalid API token",
    403: "The key's role does not allow this (a viewer key writing, a trigger key reading or "
    "starting a workflow not listed on it), or a browser session changing state from "
    "another site",
    404: "No such workflow, version, trigger or execution",
    409: "The request conflicts with the current state (a name taken, an archived workflow, "
    "an execution already finished)",
    413: "The body is larger than MAX_BODY_BYTES",
    415: "The body is not application/json",
    422: "Invalid values: `detail` sums them up, `errors` lists each one with its place",
    503: "The database is unavailable right now; try again after Retry-After seconds",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the error answers `statuses`: each one is an ErrorResponse."""
    return {
        status: {"model": ErrorResponse, "description": _MEANING[status]} for status in statuses
    }


COMMON = responses(401, 403, 422, 503)
"""What any route behind the token may answer."""
WRITE = responses(400, 403, 413, 415)
"""What a route taking a JSON body may answer, besides COMMON."""


def error_body(message: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": message}
    if errors:
        body["errors"] = errors
    return body


_NOT_AN_OBJECT = frozenset({"model_type", "model_attributes_type", "dict_type"})


def describe(errors: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    """pydantic errors -> one readable line and a list of {loc, message}."""
    items = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if loc[:1] == ["body"]:  # FastAPI's prefix for the request body
            loc = loc[1:]
        message = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        elif not loc and err.get("type") in _NOT_AN_OBJECT:
            message = "request body must be a JSON object"
        items.append({"loc": ".".join(loc), "message": message})
    summary = "; ".join(f"{i['loc']}: {i['message']}" if i["loc"] else i["message"] for i in items)
    return summary or "invalid request", items


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in errors):
            return JSONResponse(
                error_body("request body is required: a JSON object"), status_code=400
            )
        if any(e.get("type") == "json_invalid" for e in errors):
            detail = errors[0].get("ctx", {}).get("error", "")
            return JSONResponse(
                error_body(f"request body is not valid JSON: {detail}".rstrip(": ")),
                status_code=400,
            )
        summary, items = describe(errors)
        return JSONResponse(error_body(summary, items), status_code=422)

    @app.exception_handler(ValidationError)
    async def _pydantic(_: Request, exc: ValidationError) -> JSONResponse:
        summary, items = describe(list(exc.errors()))
        return JSONResponse(error_body(summary, items), status_code=422)

    @app.exception_handler(WorkflowEngineError)
    async def _engine(_: Request, exc: WorkflowEngineError) -> JSONResponse:
        status = 500
        if isinstance(exc, NotFound):
            status = 404
        elif isinstance(exc, Conflict):
            status = 409
        elif isinstance(exc, (InvalidDefinition, InvalidInput)):
            status = 422
        elif isinstance(exc, Unauthenticated):
            status = 401
        if status == 500:
            log.error("unexpected engine error: %s", exc)
        return JSONResponse(error_body(exc.message), status_code=status)

    @app.exception_handler(StorageError)
    async def _database(_: Request, exc: StorageError) -> JSONResponse:
        # The client's request was fine (its values are checked before they are stored): the
        # database failed it, most likely because it cannot be reached right now.
        log.warning("database error answering a request: %s", exc)
        return JSONResponse(
            error_body("the database is unavailable right now; try again shortly"),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, _: BodyTooLarge) -> JSONResponse:
        limit = request.app.state.max_body_bytes
        return JSONResponse(error_body(f"request body is larger than {limit} bytes"), 413)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names the methods of the first route of the path only (FastAPI makes a
            # route per method): `Allow` must list every method the path takes.
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return JSONResponse(
            error_body(str(exc.detail)), status_code=exc.status_code, headers=headers
        )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes at the request's path (asked of the router
    through `matches`, so included routers are searched as well)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    ]
