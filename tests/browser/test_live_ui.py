"""The monitoring UI in a real browser: live status without reloads, cancel, input errors, login."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import assert_not_reloaded, login, mark_page, wait_live
from tests.support.process import Serve, wait_execution

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def test_test_panel_run_turns_steps_completed_live(page: Any, serve: Serve) -> None:
    login(page)
    page.goto("/workflows/greeter")
    wait_live(page)
    mark_page(page)
    page.fill("#test-input", '{"name": "Ada"}')
    page.click("#test-run")
    steps = page.locator("#test-steps li")
    assert steps.count() == 3
    for key in ("greet", "pause", "done"):
        page.wait_for_selector(f'#test-steps li[data-step-key="{key}"][data-status="completed"]')
    page.wait_for_selector("#test-result[data-status=completed]")
    # Recent Executions shows the run, completed, without a reload.
    row = page.locator("#executions-body tr").first
    assert row.get_attribute("data-status") == "completed"
    assert_not_reloaded(page)
    with serve.client() as client:
        listed = client.get("/api/executions", params={"workflowId": "greeter"}).json()
    assert [e["status"] for e in listed["executions"]] == ["completed"]
    execution_id = listed["executions"][0]["id"]
    # The detail page shows the whole timeline of that run.
    page.click(f'#executions-body a[href="/executions/{execution_id}"]')
    page.wait_for_selector("#execution-head[data-status=completed]")
    assert page.locator('.step[data-status="completed"]').count() == 3
    assert page.locator("#logs li").count() >= 8


def test_monitoring_shows_a_new_execution_appear_and_finish(page: Any, serve: Serve) -> None:
    login(page)
    page.wait_for_selector("#executions-empty")
    wait_live(page)
    mark_page(page)
    with serve.client() as client:
        response = client.post("/api/workflows/greeter/execute", json={"input": {"name": "Bo"}})
        assert response.status_code == 202
        execution_id = response.json()["executionId"]
        row = f'#executions-body tr[data-execution-id="{execution_id}"]'
        page.wait_for_selector(row)
        page.wait_for_selector(f'{row}[data-status="completed"]')
        assert wait_execution(client, execution_id)["status"] == "completed"
    assert page.locator(f"{row} td").nth(1).inner_text() == "greeter"
    assert re.search(
        r"\d+ ms|\d+\.\d s", page.locator(f'{row} [data-field="duration"]').inner_text()
    )
    assert page.locator("#executions-empty").is_hidden()
    assert_not_reloaded(page)


def test_cancel_from_the_detail_page(page: Any, serve: Serve) -> None:
    login(page)
    with serve.client() as client:
        response = client.post("/api/workflows/slow/execute", json={"input": {}})
        execution_id = response.json()["executionId"]
        page.goto(f"/executions/{execution_id}")
        wait_live(page)
        page.wait_for_selector('.step[data-step-key="long_wait"][data-status="running"]')
        # A 60 s delay parks the execution; the page says so, live.
        page.wait_for_selector("#execution-head[data-status=waiting]")
        assert "sleeping until" in page.locator("#wait-note").inner_text()
        mark_page(page)
        page.click("#cancel-button")
        page.wait_for_selector("#execution-head[data-status=cancelled]")
        page.wait_for_selector('.step[data-step-key="long_wait"][data-status="failed"]')
        assert page.locator("#cancel-button").is_hidden()
        assert page.locator("#rerun-button").is_visible()
        assert page.locator("#wait-note").is_hidden()
        body = wait_execution(client, execution_id, timeout=10)
    assert body["status"] == "cancelled"
    assert [s["status"] for s in body["steps"]] == ["completed", "failed"]
    assert_not_reloaded(page)


def test_invalid_json_in_the_test_panel_shows_an_error_and_runs_nothing(
    page: Any, serve: Serve
) -> None:
    login(page)
    page.goto("/workflows/greeter")
    wait_live(page)
    page.fill("#test-input", '{"name": Ada}')
    page.click("#test-run")
    error = page.locator("#test-error")
    error.wait_for(state="visible")
    assert "not valid JSON" in error.inner_text()
    page.wait_for_timeout(500)
    assert page.locator("#executions-body tr").count() == 0
    with serve.client() as client:
        assert client.get("/api/executions").json()["executions"] == []


@pytest.mark.parametrize("path", ["/monitoring", "/workflows", "/workflows/greeter"])
def test_pages_without_login_go_to_the_login_page(page: Any, serve: Serve, path: str) -> None:
    page.goto(path)
    page.wait_for_url(re.compile(r".*/login\?next=.*"))
    assert page.locator("#token").is_visible()
    # A wrong token is refused with a message; the right one returns to the page asked for.
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    assert "not valid" in page.locator(".alert.error").inner_text()
    page.fill("#token", serve.token or "")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(path) + "$"))
    cookie = next(c for c in page.context.cookies() if c["name"] == "we_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert serve.token not in cookie["value"]
