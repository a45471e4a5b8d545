"""JSON text for the hot path (writes to the database, events to Redis): orjson, several times
faster than the standard library, with the standard library as the fallback for what orjson
refuses (integers beyond 64 bits)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """`value` as JSON text; datetimes as ISO 8601; other unknown types go to `default` (or
    raise TypeError)."""
    try:
        return orjson.dumps(value, default=default, option=_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value, default=default or _iso)
