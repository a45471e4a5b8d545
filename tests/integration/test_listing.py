"""GET /api/executions: keyset paging with nextCursor, newest first, and its filters."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Running, StartEngine
from tests.support.flows import eventually, start

pytestmark = pytest.mark.timeout(60)


async def all_pages(running: Running, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every execution the listing returns, following nextCursor; and how many pages it took."""
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await running.client.get("/api/executions", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["executions"]) <= int(params.get("limit", 50))
        seen += page["executions"]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            return seen, pages
        assert pages < 50, "paging does not end"


async def test_paging_and_filters(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url)
    good = await running.create_workflow(
        {"name": "good", "steps": [{"key": "a", "type": "transform", "config": {"output": 1}}]}
    )
    bad = await running.create_workflow(
        {
            "name": "bad",
            "retryMaxAttempts": 1,
            "steps": [{"key": "a", "type": "fail", "config": {"message": "no"}}],
        }
    )
    created: list[str] = []
    good_ids: list[str] = []
    bad_ids: list[str] = []
    for n in range(25):
        workflow = "bad" if n % 3 == 0 else "good"
        execution_id = await running.execute(workflow, {"n": n})
        created.append(execution_id)
        (bad_ids if workflow == "bad" else good_ids).append(execution_id)

    async def all_final() -> bool:
        response = await running.client.get("/api/executions", params={"limit": 200})
        rows = response.json()["executions"]
        return len(rows) == 25 and all(r["status"] in ("completed", "failed") for r in rows)

    await eventually(all_final)

    rows, pages = await all_pages(running, limit=10)
    ids = [r["id"] for r in rows]
    assert pages == 3
    assert ids == list(reversed(created))  # each exactly once, newest first
    stamps = [(r["createdAt"], r["id"]) for r in rows]
    assert stamps == sorted(stamps, reverse=True)
    assert [r["input"] for r in rows] == [{"n": n} for n in reversed(range(25))]

    by_workflow, _ = await all_pages(running, limit=4, workflowId=bad["id"])
    assert [r["id"] for r in by_workflow] == list(reversed(bad_ids))
    by_name, _ = await all_pages(running, limit=4, workflowId="bad")
    assert [r["id"] for r in by_name] == list(reversed(bad_ids))

    failed, _ = await all_pages(running, limit=3, status="failed")
    assert [r["id"] for r in failed] == list(reversed(bad_ids))
    assert {r["error"] for r in failed} == {"Step 'a' failed: no"}
    completed, _ = await all_pages(running, limit=7, status="completed", workflowId=good["id"])
    assert [r["id"] for r in completed] == list(reversed(good_ids))
    none, pages = await all_pages(running, status="completed", workflowId=bad["id"])
    assert none == [] and pages == 1
    unknown, _ = await all_pages(running, workflowId="no-such-workflow")
    assert unknown == []
    pending, _ = await all_pages(running, status="pending")
    assert pending == []

    # Exactly one page's worth: the last page is empty, with no cursor.
    exact, pages = await all_pages(running, limit=25)
    assert [r["id"] for r in exact] == list(reversed(created))
    assert pages <= 2
