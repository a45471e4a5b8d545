from __future__ import annotations

from datetime import UTC, datetime

import pytest

from workflow_engine.ids import new_id
from workflow_engine.storage.db import async_url
from workflow_engine.storage.pagination import Cursor


def test_cursor_round_trips() -> None:
    cursor = Cursor(datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC), new_id())
    assert Cursor.decode(cursor.encode()) == cursor


@pytest.mark.parametrize("token", ["", "garbage", "e30", "WyJ4IiwgMV0"])
def test_bad_cursors_are_refused(token: str) -> None:
    with pytest.raises(ValueError):
        Cursor.decode(token)


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
