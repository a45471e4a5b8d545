"""Signed webhook triggers (`POST /api/hooks/{path}`) on SQLite and PostgreSQL: authenticated
by the trigger's own secret only, `?wait=`, unique paths, and the secret never shown."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest

from tests.conftest import TOKEN, Running, StartEngine
from tests.support.flows import scalar, start
from tests.support.pages import page

pytestmark = pytest.mark.timeout(60)
SECRET = "hook-Secret-4f2a9c"
HOOK = {"type": "webhook", "path": "new-lead", "secret": "{{ secrets.HOOK }}"}


@pytest.fixture
def hook_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKFLOW_SECRET_HOOK", SECRET)


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def anonymous(running: Running) -> httpx.AsyncClient:
    """A client on the same app without the admin token the fixture's client sends."""
    return httpx.AsyncClient(transport=running.client._transport, base_url="http://engine.test")


def lead_workflow(name: str = "lead", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "steps": [
            {
                "key": "hello",
                "type": "transform",
                "config": {"output": {"greeting": "Hello {{ input.name }}"}},
            }
        ],
        "triggers": [HOOK],
        **extra,
    }


async def executions(running: Running) -> int:
    return int(await scalar(running, "SELECT count(*) FROM executions"))


async def test_a_signed_call_starts_the_workflow_and_wait_returns_its_output(
    db_url: str, start_engine: StartEngine, hook_secret: None
) -> None:
    running = await start(start_engine, db_url)
    workflow = await running.create_workflow(lead_workflow())
    [trigger] = workflow["triggers"]
    body = json.dumps({"name": "Ada"}).encode()
    async with anonymous(running) as client:
        response = await client.post("/api/hooks/new-lead", content=body, headers=signed(body))
        assert response.status_code == 202, response.text
        started = await running.wait(response.json()["executionId"])
        assert started["status"] == "completed"
        assert started["input"] == {"name": "Ada"}
        assert started["triggerId"] == trigger["id"] and started["triggeredBy"] is None

        # Bearer: the secret itself; `?wait=` answers with the output once it ended.
        response = await client.post(
            "/api/hooks/new-lead?wait=30000",
            json={"name": "Grace"},
            headers={"Authorization": f"Bearer {SECRET}"},
        )
        assert response.status_code == 200, response.text
        ended = response.json()
        assert ended["status"] == "completed" and ended["error"] is None
        assert ended["output"] == {"greeting": "Hello Grace"}
        execution = await running.wait(ended["executionId"])
        assert execution["output"] == ended["output"] and execution["triggerId"] == trigger["id"]

        # An empty body is no input; any content type is read as JSON.
        response = await client.post(
            "/api/hooks/new-lead?wait=0",
            content=b"",
            headers={**signed(b""), "Content-Type": "text/plain"},
        )
        assert response.status_code == 202, response.text
        assert (await running.wait(response.json()["executionId"]))["input"] == {}
    assert await executions(running) == 3


async def test_wait_answers_202_when_the_execution_has_not_ended_in_time(
    db_url: str, start_engine: StartEngine, hook_secret: None
) -> None:
    running = await start(start_engine, db_url)
    document = lead_workflow()
    # It cannot end before the event below is posted, whatever the wait.
    document["steps"].append(
        {"key": "approved", "type": "wait", "config": {"event": "lead.approved", "key": "1"}}
    )
    await running.create_workflow(document)
    body = b'{"name": "Ada"}'
    async with anonymous(running) as client:
        response = await client.post(
            "/api/hooks/new-lead?wait=300", content=body, headers=signed(body)
        )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert set(answer) == {"executionId", "status"}
    assert answer["status"] in ("pending", "running", "waiting")
    event = await running.client.post(
        "/api/events", json={"name": "lead.approved", "key": "1", "data": {"ok": True}}
    )
    assert event.json()["matched"] == 1
    assert (await running.wait(answer["executionId"]))["status"] == "completed"


async def test_refused_calls_start_nothing_and_never_tell_the_secret(
    db_url: str, start_engine: StartEngine, hook_secret: None
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(lead_workflow())
    body = b'{"name": "Ada"}'
    refused = {
        "no credentials": {"Content-Type": "application/json"},
        "wrong secret": signed(body, "not-the-secret"),
        "another body's signature": signed(b'{"name": "Eve"}'),
        "malformed signature": {"X-Signature-256": "sha256=zz"},
        "wrong bearer": {"Authorization": "Bearer not-the-secret"},
        "the admin token": {"Authorization": f"Bearer {TOKEN}"},
        "the admin token as signature key": signed(body, TOKEN),
    }
    async with anonymous(running) as client:
        for why, headers in refused.items():
            response = await client.post("/api/hooks/new-lead", content=body, headers=headers)
            assert response.status_code == 401, (why, response.text)
            assert SECRET not in response.text and "X-Signature-256" in response.json()["detail"]
    # The fixture's client sends the admin token: no use here either.
    response = await running.client.post("/api/hooks/new-lead", content=body)
    assert response.status_code == 401, response.text
    assert await executions(running) == 0


async def test_bad_calls(db_url: str, start_engine: StartEngine, hook_secret: None) -> None:
    running = await start(start_engine, db_url)
    workflow = await running.create_workflow(lead_workflow())
    body = b'{"name": "Ada"}'
    async with anonymous(running) as client:
        for path in ("nobody-here", "bad%20path", "a.b", "x" * 101):
            response = await client.post(f"/api/hooks/{path}", content=body, headers=signed(body))
            assert response.status_code == 404, (path, response.text)
        for wait in ("-1", "abc", "1.5", "30001", "", "\uff11"):  # the last: a full-width 1
            response = await client.post(
                f"/api/hooks/new-lead?wait={wait}", content=body, headers=signed(body)
            )
            assert response.status_code == 400, (wait, response.text)
            assert "wait must be a whole number" in response.json()["detail"]
        for raw in (b"name=Ada", b'{"name": '):
            response = await client.post(
                "/api/hooks/new-lead",
                content=raw,
                headers={**signed(raw), "Content-Type": "application/x-www-form-urlencoded"},
            )
            assert response.status_code == 400, response.text
            assert "not valid JSON" in response.json()["detail"]
        assert await executions(running) == 0

        # A disabled trigger answers its callers (only them) that it is disabled.
        [trigger] = workflow["triggers"]
        changed = await running.client.put(
            f"/api/triggers/{trigger['id']}", json={**HOOK, "enabled": False}
        )
        assert changed.status_code == 200, changed.text
        response = await client.post("/api/hooks/new-lead", content=body, headers=signed(body))
        assert response.status_code == 409, response.text
        response = await client.post("/api/hooks/new-lead", content=body)
        assert response.status_code == 401, response.text
    assert await executions(running) == 0


async def test_a_secret_not_set_refuses_every_call(
    db_url: str, start_engine: StartEngine, hook_secret: None
) -> None:
    running = await start(start_engine, db_url)
    document = lead_workflow()
    document["triggers"] = [{**HOOK, "secret": "{{ secrets.NOT_SET }}"}]
    await running.create_workflow(document)
    async with anonymous(running) as client:
        for headers in (signed(b"{}", ""), {"Authorization": "Bearer "}, signed(b"{}")):
            response = await client.post("/api/hooks/new-lead", content=b"{}", headers=headers)
            assert response.status_code == 401, response.text
    assert await executions(running) == 0


async def test_paths_are_unique_among_live_workflows(
    db_url: str, start_engine: StartEngine, hook_secret: None
) -> None:
    running = await start(start_engine, db_url)
    first = await running.create_workflow(lead_workflow("first"))
    response = await running.client.post("/api/workflows", json=lead_workflow("second"))
    assert response.status_code == 422, response.text
    assert "webhook path 'new-lead' is already used by the workflow 'first'" in response.text
    assert (await running.client.get("/api/workflows/second")).status_code == 404

    other = await running.create_workflow({**lead_workflow("other"), "triggers": []})
    for request in (
        running.client.put("/api/workflows/other", json=lead_workflow("other")),
        running.client.post("/api/workflows/other/triggers", json=HOOK),
        running.client.post("/api/workflows/first/triggers", json=HOOK),
    ):
        response = await request
        assert response.status_code == 422, response.text
        assert "webhook path 'new-lead' is already used" in response.text
    listed = await running.client.get(f"/api/workflows/{other['id']}/triggers")
    assert listed.json()["triggers"] == []

    # Saving the first again keeps its path; archiving it frees the path.
    saved = await running.client.put("/api/workflows/first", json=lead_workflow("first"))
    assert saved.status_code == 200, saved.text
    assert (await running.client.delete(f"/api/workflows/{first['id']}")).status_code == 200
    moved = await running.client.post("/api/workflows/other/triggers", json=HOOK)
    assert moved.status_code == 201, moved.text
    body = b'{"name": "Ada"}'
    async with anonymous(running) as client:
        response = await client.post(
            "/api/hooks/new-lead?wait=30000", content=body, headers=signed(body)
        )
    assert response.status_code == 200, response.text
    assert (await running.wait(response.json()["executionId"]))["workflowId"] == other["id"]


async def test_the_secret_is_never_shown_or_stored(
    db_url: str, start_engine: StartEngine, hook_secret: None
) -> None:
    running = await start(start_engine, db_url)
    workflow = await running.create_workflow(lead_workflow())
    body = b'{"name": "Ada"}'
    async with anonymous(running) as client:
        response = await client.post(
            "/api/hooks/new-lead?wait=30000", content=body, headers=signed(body)
        )
    assert response.status_code == 200, response.text
    execution_id = response.json()["executionId"]
    shown = [
        await running.client.get(f"/api/workflows/{workflow['id']}"),
        await running.client.get(f"/api/workflows/{workflow['id']}/triggers"),
        await running.client.get(f"/api/workflows/{workflow['id']}/versions/1"),
        await running.client.get(f"/api/executions/{execution_id}"),
    ]
    for answer in shown:
        assert answer.status_code == 200, answer.text
        assert SECRET not in answer.text
    [trigger] = shown[0].json()["triggers"]
    assert trigger["path"] == "new-lead" and trigger["secret"] == "{{ secrets.HOOK }}"
    html = await page(running, f"/workflows/{workflow['id']}")
    assert "POST /api/hooks/new-lead" in html and SECRET not in html
    async with running.engine.db.read() as conn:
        for table in ("triggers", "workflow_versions", "executions", "execution_events"):
            rows = await conn.exec_driver_sql(f"SELECT * FROM {table}")
            assert SECRET not in repr(rows.all()), table
