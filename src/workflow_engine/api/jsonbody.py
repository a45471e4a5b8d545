"""Request bodies: parsed as strict JSON before FastAPI validates them against their models.

FastAPI reads a JSON body with `request.json()` (the standard library's parser, which accepts
NaN and Infinity and raises a bare ValueError on a 5,000-digit number), then validates the
value against the route's model. `StrictJsonRoute` hands FastAPI a request whose `json()` is
`parse_body`: every value that comes out of it is one the databases can store and the API can
return, and everything else is a 400 or 422 with a message saying what is wrong.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

MAX_DEPTH = 128
"""Deeper JSON is refused: it could not be stored, rendered or returned safely."""


def parse_body(raw: bytes) -> Any:
    """The body parsed as JSON (None if empty), or an HTTPException saying what is wrong."""
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


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_body(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """An API route whose JSON body goes through `parse_body`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            strict_request = StrictJsonRequest(request.scope, request.receive)
            # Read here, outside FastAPI's parsing, which would turn the middleware's
            # BodyTooLarge (a 413) into a generic 400; the body is kept for FastAPI.
            await strict_request.body()
            return await handler(strict_request)

        return strict


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
