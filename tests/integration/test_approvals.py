"""Approval steps (SQLite and PostgreSQL): a person approves or rejects through
`POST /api/executions/{id}/steps/{stepKey}/approve|reject`; once only; timeouts; bad requests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.conftest import TOKEN, Running, StartEngine
from tests.integration.test_api_keys import bearer, new_key
from tests.support.flows import sql, start
from tests.support.target import Target

pytestmark = pytest.mark.timeout(60)
FAST = {"durable_delay_min_ms": 500, "reconcile_interval_ms": 300}


def waiting(body: dict[str, Any]) -> bool:
    return body["status"] == "waiting"


def refund_workflow(name: str, target: Target, **config: Any) -> dict[str, Any]:
    return {
        "name": name,
        "retryMaxAttempts": 3,
        "steps": [
            {"key": "before", "type": "http", "config": {"url": f"{target.url}/count/{name}"}},
            {
                "key": "review",
                "type": "approval",
                "config": {"message": "Refund {{ input.amount }} EUR?", **config},
            },
            {"key": "after", "type": "http", "config": {"url": f"{target.url}/count/{name}-after"}},
        ],
    }


async def decide(
    running: Running,
    execution_id: str,
    verb: str,
    body: Any = None,
    *,
    step: str = "review",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await running.client.post(
        f"/api/executions/{execution_id}/steps/{step}/{verb}", json=body, headers=headers
    )


async def json_column(running: Running, query: str, execution_id: str) -> list[Any]:
    """A JSON column's values (raw SQL: text on SQLite, parsed on PostgreSQL)."""
    rows = await sql(running, query, id=execution_id)
    values = [next(iter(row.values())) for row in rows]
    return [json.loads(v) if isinstance(v, str) else v for v in values]


async def event_types(running: Running, execution_id: str) -> list[str]:
    rows = await sql(
        running,
        "SELECT type FROM execution_events WHERE execution_id = :id ORDER BY seq",
        id=execution_id,
    )
    return [row["type"] for row in rows]


async def started(running: Running, name: str, target: Target, **config: Any) -> str:
    await running.create_workflow(refund_workflow(name, target, **config))
    execution_id = await running.execute(name, {"amount": 120})
    await running.wait(execution_id, until=waiting)
    return execution_id


async def test_approve_resumes_the_execution_with_who_decided(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url, **FAST)
    operator = (await new_key(running, "ops-key", "operator"))["key"]
    execution_id = await started(running, "refund", target, timeoutMs=600_000)
    body = await running.wait(execution_id, until=waiting)
    [wait] = body["waits"]
    assert wait["type"] == "approval" and wait["until"] is not None
    assert wait["approval"] == {"message": "Refund 120 EUR?", "onReject": "fail"}
    [waiting_event] = await json_column(
        running,
        "SELECT data FROM execution_events WHERE execution_id = :id AND type = 'waiting'",
        execution_id,
    )
    assert waiting_event["stepKey"] == "review"
    assert waiting_event["approval"] == {"message": "Refund 120 EUR?"}

    response = await decide(
        running, execution_id, "approve", {"comment": "fine"}, headers=bearer(operator)
    )
    assert response.status_code == 200, response.text
    decision = response.json()
    assert decision["approved"] is True and decision["by"] == "ops-key"
    assert decision["comment"] == "fine" and decision["at"].endswith("Z")
    assert decision["executionId"] == execution_id and decision["stepKey"] == "review"

    body = await running.wait(execution_id, timeout=10)
    assert body["status"] == "completed", (body["error"], body["steps"])
    steps = {s["stepKey"]: s for s in body["steps"]}
    output = {k: decision[k] for k in ("approved", "by", "comment", "at")}
    assert steps["review"]["status"] == "completed" and steps["review"]["output"] == output
    assert steps["review"]["input"]["message"] == "Refund 120 EUR?"
    assert len(target.hits("count/refund")) == 1 and len(target.hits("count/refund-after")) == 1
    assert [(a["action"], a["actor"]) for a in body["audit"]] == [("step.approved", "ops-key")]
    assert body["audit"][0]["summary"] == "step review approved by ops-key"
    types = await event_types(running, execution_id)
    assert types.count("waiting") == 1 and types.count("resumed") == 1
    assert types.index("waiting") < types.index("resumed") < types.index("completed")
    [resumed] = await json_column(
        running,
        "SELECT data FROM execution_events WHERE execution_id = :id AND type = 'resumed'",
        execution_id,
    )
    assert resumed["reason"] == "approved" and resumed["decision"] == output

    # A second decision, either way, is refused and changes nothing.
    for verb in ("approve", "reject"):
        again = await decide(running, execution_id, verb, {"comment": "late"})
        assert again.status_code == 409, again.text
        assert "already approved by ops-key" in again.json()["detail"]
    body = await running.wait(execution_id)
    assert body["status"] == "completed" and len(body["audit"]) == 1


async def test_reject_fails_the_step_not_retried(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url, **FAST)
    execution_id = await started(running, "strict", target)
    response = await decide(running, execution_id, "reject", {"comment": "too much"})
    assert response.status_code == 200, response.text
    assert response.json()["approved"] is False and response.json()["by"] == "API_TOKEN"

    body = await running.wait(execution_id, timeout=10)
    assert body["status"] == "failed", body
    assert body["error"] == "Step 'review' failed: Rejected by API_TOKEN: too much"
    steps = {s["stepKey"]: s for s in body["steps"]}
    assert steps["review"]["status"] == "failed" and steps["review"]["retryCount"] == 0
    assert "after" not in steps and target.hits("count/strict-after") == []
    assert [(a["action"], a["actor"]) for a in body["audit"]] == [("step.rejected", "API_TOKEN")]
    again = await decide(running, execution_id, "approve")
    assert again.status_code == 409
    assert "already rejected by API_TOKEN" in again.json()["detail"]


async def test_reject_with_on_reject_continue_goes_on(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url, **FAST)
    execution_id = await started(running, "lenient", target, onReject="continue")
    # No body at all: the comment is optional.
    response = await running.client.post(f"/api/executions/{execution_id}/steps/review/reject")
    assert response.status_code == 200, response.text
    body = await running.wait(execution_id, timeout=10)
    assert body["status"] == "completed", (body["error"], body["steps"])
    steps = {s["stepKey"]: s for s in body["steps"]}
    review = steps["review"]
    assert review["status"] == "completed"
    assert review["output"]["approved"] is False and review["output"]["comment"] is None
    assert review["output"]["by"] == "API_TOKEN"
    assert steps["after"]["status"] == "completed" and len(target.hits("count/lenient-after")) == 1


async def test_concurrent_decisions_one_wins_and_it_resumes_once(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url, **FAST)
    execution_id = await started(running, "race", target)
    answers = await asyncio.gather(
        *(
            decide(running, execution_id, "approve" if n % 2 else "reject", {"comment": str(n)})
            for n in range(6)
        )
    )
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409, 409, 409]
    [winner] = [a.json() for a in answers if a.status_code == 200]
    body = await running.wait(execution_id, timeout=10)
    assert body["status"] == ("completed" if winner["approved"] else "failed"), body
    steps = [s for s in body["steps"] if s["stepKey"] == "review"]
    assert len(steps) == 1
    assert (await event_types(running, execution_id)).count("resumed") == 1
    assert len(body["audit"]) == 1 and body["audit"][0]["actor"] == "API_TOKEN"
    assert len(target.hits("count/race-after")) == (1 if winner["approved"] else 0)
    [decision] = await json_column(
        running, "SELECT data FROM execution_waits WHERE execution_id = :id", execution_id
    )
    assert decision["comment"] == winner["comment"]


async def test_approval_past_its_timeout_fails_or_continues(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url, **FAST)
    execution_id = await started(running, "late", target, timeoutMs=800)
    body = await running.wait(execution_id, timeout=10)
    assert body["status"] == "failed", body
    assert body["error"] == "Step 'review' failed: Timed out after 800 ms waiting for a decision"
    steps = {s["stepKey"]: s for s in body["steps"]}
    assert steps["review"]["retryCount"] == 0 and "after" not in steps
    late = await decide(running, execution_id, "approve")
    assert late.status_code == 409, late.text
    assert "timed out waiting for a decision" in late.json()["detail"]
    assert (await running.client.get(f"/api/executions/{execution_id}")).json()["audit"] == []

    lenient = await started(running, "late-ok", target, timeoutMs=500, onTimeout="continue")
    body = await running.wait(lenient, timeout=10)
    assert body["status"] == "completed", (body["error"], body["steps"])
    steps = {s["stepKey"]: s for s in body["steps"]}
    assert steps["review"]["output"] is None and steps["after"]["status"] == "completed"


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/executions/nope/steps/review/approve", None, 404, "no execution 'nope'"),
        ("/api/executions/{id}/steps/ghost/approve", None, 404, "has no step 'ghost'"),
        ("/api/executions/{id}/steps/before/approve", None, 409, "is a http step, not an approval"),
        ("/api/executions/{id}/steps/review/approve", {"comment": "x" * 2001}, 422, "comment"),
        ("/api/executions/{id}/steps/review/reject", {"why": "extra"}, 422, "why"),
        ("/api/executions/{id}/steps/review/approve", {"comment": 5}, 422, "comment"),
    ],
)
async def test_bad_decisions_are_refused_and_change_nothing(
    db_url: str,
    start_engine: StartEngine,
    target: Target,
    path: str,
    body: Any,
    status: int,
    message: str,
) -> None:
    running = await start(start_engine, db_url, **FAST)
    execution_id = await started(running, "guarded", target)
    response = await running.client.post(path.replace("{id}", execution_id), json=body)
    assert response.status_code == status, response.text
    assert message in response.text
    execution = await running.wait(execution_id, until=waiting)
    assert execution["audit"] == [] and execution["waits"][0]["stepKey"] == "review"
    [wait] = await sql(
        running, "SELECT matched_at FROM execution_waits WHERE execution_id = :id", id=execution_id
    )
    assert wait["matched_at"] is None


async def test_a_viewer_may_not_decide_and_an_unreached_approval_is_a_conflict(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url, **FAST)
    viewer = (await new_key(running, "eyes", "viewer"))["key"]
    await running.create_workflow(
        {
            "name": "two-gates",
            "steps": [
                {"key": "paid", "type": "wait", "config": {"event": "paid"}},
                {"key": "review", "type": "approval", "config": {"message": "ok?"}},
            ],
        }
    )
    execution_id = await running.execute("two-gates")
    await running.wait(execution_id, until=waiting)
    refused = await decide(running, execution_id, "approve", headers=bearer(viewer))
    assert refused.status_code == 403 and "viewer" in refused.json()["detail"]
    early = await decide(running, execution_id, "approve")
    assert early.status_code == 409, early.text
    assert "is not waiting for a decision yet" in early.json()["detail"]
    wrong_kind = await decide(running, execution_id, "approve", step="paid")
    assert wrong_kind.status_code == 409 and "is a wait step" in wrong_kind.json()["detail"]


async def test_a_map_cannot_map_an_approval(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url, **FAST)
    response = await running.client.post(
        "/api/workflows",
        json={
            "name": "mapped",
            "steps": [
                {
                    "key": "each",
                    "type": "map",
                    "config": {
                        "items": [1, 2],
                        "step": {"type": "approval", "config": {"message": "ok?"}},
                    },
                }
            ],
        },
    )
    assert response.status_code == 422, response.text
    assert "a map step cannot map an approval step" in response.text


async def test_an_approval_without_a_message_fails_clearly_and_a_number_is_text(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url, **FAST)
    await running.create_workflow(
        {"name": "mute", "steps": [{"key": "review", "type": "approval", "config": {}}]}
    )
    body = await running.wait(await running.execute("mute"), timeout=10)
    assert body["status"] == "failed" and "message" in body["error"], body["error"]
    await running.create_workflow(
        {
            "name": "amount",
            "steps": [
                {"key": "review", "type": "approval", "config": {"message": "{{ input.n }}"}}
            ],
        }
    )
    execution_id = await running.execute("amount", {"n": 30})
    body = await running.wait(execution_id, until=waiting)
    assert body["waits"][0]["approval"]["message"] == "30"


async def test_an_approval_beside_an_event_wait_in_a_graph(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url, **FAST)
    await running.create_workflow(
        {
            "name": "both",
            "steps": [
                {"key": "paid", "type": "wait", "needs": [], "config": {"event": "paid"}},
                {"key": "review", "type": "approval", "needs": [], "config": {"message": "ok?"}},
                {
                    "key": "ship",
                    "type": "http",
                    "needs": ["paid", "review"],
                    "config": {"url": f"{target.url}/count/ship"},
                },
            ],
        }
    )
    execution_id = await running.execute("both")
    body = await running.wait(execution_id, until=lambda b: waiting(b) and len(b["waits"]) == 2)
    assert {w["type"] for w in body["waits"]} == {"event", "approval"}
    response = await decide(running, execution_id, "approve", {"comment": "yes"})
    assert response.status_code == 200, response.text
    # The approval ends; the execution parks again on the event alone.
    body = await running.wait(
        execution_id, until=lambda b: waiting(b) and [w["type"] for w in b["waits"]] == ["event"]
    )
    steps = {s["stepKey"]: s for s in body["steps"]}
    assert steps["review"]["status"] == "completed" and steps["review"]["output"]["approved"]
    assert (await running.client.post("/api/events", json={"name": "paid"})).status_code == 202
    body = await running.wait(execution_id, timeout=10)
    assert body["status"] == "completed", body
    assert len(target.hits("count/ship")) == 1
    assert (await event_types(running, execution_id)).count("resumed") == 2


async def test_the_page_shows_the_approval_and_its_buttons_to_operators_only(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    from tests.integration.test_ui_pages import _browser

    running = await start(start_engine, db_url, **FAST)
    viewer = (await new_key(running, "eyes", "viewer"))["key"]
    execution_id = await started(running, "shown", target)

    async def page_as(key: str | None) -> str:
        async with _browser(running) as browser:
            token = key or TOKEN
            login = await browser.post(
                "/login",
                content=f"token={token}&next=/monitoring",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert login.status_code == 303, login.text
            response = await browser.get(f"/executions/{execution_id}")
            assert response.status_code == 200
            return response.text

    admin = await page_as(None)
    assert "waiting for a decision" in admin and "Refund 120 EUR?" in admin
    assert 'data-decide="approve"' in admin and 'data-decide="reject"' in admin
    seen = await page_as(viewer)
    assert "Refund 120 EUR?" in seen and 'data-decide="approve"' not in seen
    response = await decide(running, execution_id, "reject", {"comment": "<b>no</b>"})
    assert response.status_code == 200
    await running.wait(execution_id)
    ended = await page_as(None)
    assert "Rejected by <strong" in ended and "&lt;b&gt;no&lt;/b&gt;" in ended
    assert 'data-decide="approve"' not in ended


async def test_no_decision_on_an_execution_a_failed_branch_ended(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url, **FAST)
    await running.create_workflow(
        {
            "name": "broken",
            "steps": [
                {"key": "review", "type": "approval", "needs": [], "config": {"message": "ok?"}},
                {"key": "paid", "type": "wait", "needs": [], "config": {"event": "broken"}},
                {"key": "boom", "type": "fail", "needs": ["paid"], "config": {"message": "no"}},
            ],
        }
    )
    execution_id = await running.execute("broken")
    await running.wait(execution_id, until=lambda b: waiting(b) and len(b["waits"]) == 2)
    assert (await running.client.post("/api/events", json={"name": "broken"})).status_code == 202
    body = await running.wait(execution_id, timeout=10)
    assert body["status"] == "failed", body
    response = await decide(running, execution_id, "approve")
    assert response.status_code == 409, response.text
    assert (
        response.json()["detail"]
        == f"execution {execution_id!r} is failed; it takes no decision now"
    )
    assert (await running.wait(execution_id))["audit"] == []
