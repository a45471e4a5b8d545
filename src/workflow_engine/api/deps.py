"""Request-scoped access to the engine built at start-up."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from workflow_engine.bootstrap import Engine
from workflow_engine.storage.pagination import Cursor


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def parse_cursor(cursor: str | None) -> Cursor | None:
    if not cursor:
        return None
    try:
        return Cursor.decode(cursor)
    except ValueError:
        raise HTTPException(400, "invalid cursor: pass the nextCursor of a previous page") from None


async def json_body(request: Request) -> Any:
    """The request body parsed as JSON, or a 400 saying what is wrong with it (None if empty)."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPException(400, f"request body is not valid JSON: {exc}") from None


async def json_object(body: Annotated[Any, Depends(json_body)]) -> dict[str, Any]:
    """A required JSON object body."""
    if body is None:
        raise HTTPException(400, "request body is required: a JSON object")
    if not isinstance(body, dict):
        raise HTTPException(422, f"request body must be a JSON object, not {type(body).__name__}")
    return body


JsonObject = Annotated[dict[str, Any], Depends(json_object)]
OptionalJson = Annotated[Any, Depends(json_body)]
