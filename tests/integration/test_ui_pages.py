"""The UI's server side: login, redirects, the session cookie on the API (with its CSRF rule),
pages that render with data and without, the editor's errors, monitoring filters and paging."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import TOKEN, Running, StartEngine
from workflow_engine.api.session import COOKIE_NAME

pytestmark = pytest.mark.timeout(60)
FLOW = {
    "name": "ui-flow",
    "steps": [{"key": "a", "type": "transform", "config": {"output": {"x": 1}}}],
}


def _browser(running: Running) -> httpx.AsyncClient:
    """A client without the bearer token: like a browser that has not logged in."""
    return httpx.AsyncClient(transport=running.client._transport, base_url="http://engine.test")


async def _login(browser: httpx.AsyncClient) -> None:
    response = await browser.post(
        "/login",
        content=f"token={TOKEN}&next=/workflows",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/workflows"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie


async def test_login_cookie_pages_and_api(db_url: str, start_engine: StartEngine) -> None:
    running = await start_engine(db_url)
    async with _browser(running) as browser:
        for path in ("/monitoring", "/workflows", "/workflows/x", "/executions/x"):
            response = await browser.get(path)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/login?next=")
        assert (await browser.get("/api/executions")).status_code == 401
        bad = await browser.post(
            "/login",
            content="token=nope",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert bad.status_code == 401 and "not valid" in bad.text
        evil = await browser.post(
            "/login",
            content=f"token={TOKEN}&next=//evil.example",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert evil.headers["location"] == "/monitoring"  # never an open redirect
        await _login(browser)
        assert COOKIE_NAME in browser.cookies
        empty = await browser.get("/monitoring")
        assert empty.status_code == 200 and "No executions yet" in empty.text
        assert "No workflows yet" in (await browser.get("/workflows")).text
        # The cookie works on the API; a write needs X-Requested-With (CSRF guard).
        assert (await browser.get("/api/executions")).status_code == 200
        assert (await browser.post("/api/workflows", json=FLOW)).status_code == 403
        headers = {"X-Requested-With": "test"}
        created = await browser.post("/api/workflows", json=FLOW, headers=headers)
        assert created.status_code == 201
        run = await browser.post(
            "/api/workflows/ui-flow/execute", json={"input": {}}, headers=headers
        )
        execution_id = run.json()["executionId"]
        await running.wait(execution_id)
        detail = await browser.get(f"/executions/{execution_id}")
        assert detail.status_code == 200 and 'data-status="completed"' in detail.text
        page = await browser.get(f"/workflows/{created.json()['id']}")
        assert "Test panel" in page.text and "Recent Executions" in page.text
        # The id's random tail, not its time prefix (issue 12, point 7), and the whole id to copy.
        assert f"…{execution_id[-8:]}" in page.text and f'data-copy="{execution_id}"' in page.text
        assert (await browser.get("/executions/nope")).status_code == 404
        logout = await browser.post("/logout")
        assert logout.status_code == 303 and (await browser.get("/workflows")).status_code == 303


async def test_editor_reports_errors_in_place(db_url: str, start_engine: StartEngine) -> None:
    running = await start_engine(db_url)
    client = running.client

    async def editor(text: str, fmt: str = "yaml", **extra: object) -> httpx.Response:
        return await client.post("/api/ui/editor", json={"text": text, "format": fmt, **extra})

    broken = await editor("name: x\nsteps:\n  - key: a\n  bad: [")
    assert broken.status_code == 422 and broken.json()["errors"][0]["line"] == 4
    bad_json = await editor('{"name": "x",\n "steps": [}', "json")
    assert bad_json.json()["errors"][0]["line"] == 2
    unknown = await editor("name: x\nsteps:\n  - key: a\n    type: nope\n")
    assert "unknown step type" in unknown.json()["errors"][0]["message"]
    extra = await editor("name: x\nsteps: []\ncolour: red\n")
    assert any(e["loc"] == "colour" for e in extra.json()["errors"])
    dry = await editor("name: y\nsteps:\n  - key: a\n    type: log\n", dryRun=True)
    assert dry.json() == {"ok": True, "errors": []}
    assert (await client.get("/api/workflows/y")).status_code == 404
    saved = await editor("name: y\nsteps:\n  - key: a\n    type: log\n")
    assert saved.json()["url"] == f"/workflows/{saved.json()['id']}"
    again = await editor("name: y\nsteps:\n  - key: b\n    type: log\n", workflowId="y")
    assert again.json()["ok"]
    versions = (await client.get("/api/workflows/y/versions")).json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]


async def test_monitoring_filters_and_pages(db_url: str, start_engine: StartEngine) -> None:
    running = await start_engine(db_url)
    await running.create_workflow(FLOW)
    ids = [await running.execute("ui-flow") for _ in range(55)]
    for execution_id in ids:
        await running.wait(execution_id)
    async with _browser(running) as browser:
        await _login(browser)
        first = await browser.get("/monitoring")
        assert first.text.count("data-execution-id=") == 50
        assert 'id="older"' in first.text
        cursor = first.text.split("cursor=")[1].split('"')[0]
        second = await browser.get(f"/monitoring?cursor={cursor}")
        assert second.text.count("data-execution-id=") == 5
        assert ids[0] in second.text
        failed = await browser.get("/monitoring?status=failed&period=1h")
        assert "No executions match" in failed.text
        other = await browser.get("/monitoring?workflow=nope")
        assert "No executions match" in other.text


GRAPH = {
    "name": "ui-graph",
    "steps": [
        {"key": "a", "name": "Left branch", "type": "transform", "needs": [], "config": {}},
        {"key": "b", "type": "transform", "needs": [], "config": {"output": {"y": 2}}},
        {
            "key": "each",
            "type": "map",
            "needs": ["a", "b"],
            "config": {
                "items": "{{ input.items }}",
                "parallelism": 2,
                "step": {"type": "transform", "config": {"output": "{{ item }}"}},
            },
        },
        {"key": "sub", "type": "workflow", "config": {"workflow": "ui-flow"}},
    ],
}


async def test_graph_pages_show_items_children_and_the_graph(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start_engine(db_url)
    await running.create_workflow(FLOW)
    created = await running.create_workflow(GRAPH)
    execution_id = await running.execute("ui-graph", {"items": ["x", "y", "z"]})
    body = await running.wait(execution_id)
    assert body["status"] == "completed", body["error"]
    child_id = body["children"][0]["id"]
    async with _browser(running) as browser:
        await _login(browser)
        page = (await browser.get(f"/executions/{execution_id}")).text
        # Map items under their map step, collapsed to a count.
        assert 'data-item-total="3"' in page
        assert "3 items: " in page and "3 completed" in page
        items = page.split('data-field="items" hidden>')[1].split("</ol>")[0]
        assert [f'data-step-key="each[{i}]"' in items for i in range(3)] == [True] * 3
        # The graph's needs, and the workflow step's child one click away.
        assert "after a, b" in page and "starts at once" in page
        assert f'href="/executions/{child_id}"' in page
        assert 'data-started-at="20' in page and "data-server-now=" in page
        child = (await browser.get(f"/executions/{child_id}")).text
        assert 'id="parent-link"' in child and "<code>sub</code>" in child
        assert f'href="/executions/{execution_id}"' in child and "(ui-graph)" in child
        assert 'id="parent-link"' not in page
        workflow = (await browser.get(f"/workflows/{created['id']}")).text
        svg = workflow.split('<svg class="graph"')[1].split("</svg>")[0]
        assert svg.count('<g class="node ') == 4
        assert svg.count('class="node kind-map"') == 1 and "map of transform" in svg
        assert 'class="node kind-workflow"' in svg and 'href="/workflows/ui-flow"' in svg
        edges = sorted(re.findall(r'class="edge" data-from="(\w+)" data-to="(\w+)"', svg))
        assert edges == [("a", "each"), ("b", "each"), ("each", "sub")]
        assert "Left branch" in svg and "a · transform" in svg


async def test_editor_names_the_step_whose_needs_are_wrong(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start_engine(db_url)
    text = "name: x\nsteps:\n  - key: a\n    type: log\n"
    text += "  - key: b\n    type: log\n    needs: [a, zzz]\n"
    response = await running.client.post("/api/ui/editor", json={"text": text, "dryRun": True})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "loc": "steps.1.needs",
            "message": "step 'b' needs 'zzz', which is not a step key",
            "line": 7,
            "step": "b",
        }
    ]
    itself = text.replace("[a, zzz]", "[b]")
    problem = (await running.client.post("/api/ui/editor", json={"text": itself})).json()
    assert problem["errors"][0]["step"] == "b" and "needs itself" in problem["errors"][0]["message"]
    assert (await running.client.get("/api/workflows/x")).status_code == 404
