"""Request-scoped access to the engine built at start-up."""

from __future__ import annotations

import json
import math
import sys
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from workflow_engine.bootstrap import Engine
from workflow_engine.storage.pagination import Cursor


async def get_engine(request: Request) -> Engine:
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
        value = json.loads(
            raw, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int
        )
    except _OutOfRange as exc:
        raise HTTPException(400, f"request body holds a number out of range: {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, _NotJson) as exc:
        raise HTTPException(400, f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise HTTPException(400, f"request body is nested deeper than {MAX_DEPTH} levels") from None
    problem = _unstorable(value)
    if problem:
        raise HTTPException(422, f"request body {problem}")
    return value


MAX_DEPTH = 128
"""Deeper JSON is refused: it could not be stored, rendered or returned safely."""


class _NotJson(ValueError):
    pass


class _OutOfRange(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise _OutOfRange(f"{_excerpt(text)} is larger than a 64-bit float")
    return number


def _bounded_int(text: str) -> int:
    # Python refuses to convert integers longer than this (a guard against quadratic time), so
    # neither this parser nor any later str() of the value could handle one.
    limit = sys.get_int_max_str_digits() or 4300
    digits = len(text.lstrip("-"))
    if digits > limit:
        raise _OutOfRange(f"{_excerpt(text)} has {digits} digits; at most {limit} are accepted")
    return int(text)


def _excerpt(number: str) -> str:
    return number if len(number) <= 40 else f"{number[:20]}...{number[-8:]}"


def _unstorable(value: Any) -> str | None:
    """Why the databases could not store `value` (NUL characters, too deep), if they cannot."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"is nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, str) and "\x00" in item:
            return "must not contain NUL characters (\\u0000)"
        if isinstance(item, dict):
            stack.extend((key, depth) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return None


async def json_object(body: Annotated[Any, Depends(json_body)]) -> dict[str, Any]:
    """A required JSON object body."""
    if body is None:
        raise HTTPException(400, "request body is required: a JSON object")
    if not isinstance(body, dict):
        raise HTTPException(422, f"request body must be a JSON object, not {type(body).__name__}")
    return body


JsonObject = Annotated[dict[str, Any], Depends(json_object)]
OptionalJson = Annotated[Any, Depends(json_body)]
