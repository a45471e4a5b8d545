from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from workflow_engine.ids import new_id
from workflow_engine.storage.db import async_url
from workflow_engine.storage.pagination import Cursor


def test_cursor_round_trips() -> None:
    cursor = Cursor(datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC), new_id())
    assert Cursor.decode(cursor.encode()) == cursor


# A fixed row id: parameters must be the same in every process that collects the tests (xdist).
ROW_ID = "01a22d28-fb30-7ed3-b27b-83955986a267"


def _token(created_at: object, row_id: object) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, row_id]).encode()).decode()


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "e30",
        "WyJ4IiwgMV0",
        _token("2026-01-01T00:00:00", ROW_ID),  # naive
        # No UTC equivalent (year 0, year 10000): answered 500, then 503, by the database.
        _token("0001-01-01T00:00:00+14:00", ROW_ID),
        _token("9999-12-31T23:59:59-14:00", ROW_ID),
        _token("2026-01-01T00:00:00+00:00", "a\u0000b"),  # no row id has that shape
        _token("2026-01-01T00:00:00+00:00", 5),
        _token(20260101, ROW_ID),
    ],
)
def test_bad_cursors_are_refused(token: str) -> None:
    with pytest.raises(ValueError):
        Cursor.decode(token)


def test_a_cursor_in_another_offset_is_read_in_utc() -> None:
    row_id = new_id()
    cursor = Cursor.decode(_token("2026-01-01T01:00:00+01:00", row_id))
    assert cursor == Cursor(datetime(2026, 1, 1, tzinfo=UTC), row_id)
    assert cursor.created_at.utcoffset() == timedelta(0)


def test_ids_are_unique_and_sort_by_creation() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    assert ids[0] < ids[-1]
    assert all(len(i) == 36 and i[14] == "7" for i in ids)


def test_seed_database_urls_are_accepted() -> None:
    url, args = async_url("postgresql://postgres:postgres@localhost:5432/ai_agents?schema=public")
    assert url.drivername == "postgresql+asyncpg"
    assert "schema" not in url.query
    assert args["server_settings"] == {"search_path": "public"}
    url, _ = async_url("sqlite:////tmp/x/engine.db")
    assert url.drivername == "sqlite+aiosqlite"
