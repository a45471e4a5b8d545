"""The UI with named keys: a viewer sees no write action anywhere; an operator cancels an
execution and the page says who did it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import login, wait_live
from tests.support.process import Serve, wait_execution

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

WRITE_BUTTONS = (
    "#new-workflow",
    "#edit-workflow",
    "#editor-save",
    "#test-run",
    "#cancel-button",
    "#rerun-button",
)


def _key(serve: Serve, name: str, role: str, **extra: Any) -> str:
    with serve.client() as client:
        response = client.post("/api/keys", json={"name": name, "role": role, **extra})
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def _no_write_buttons(page: Any) -> None:
    for selector in WRITE_BUTTONS:
        assert page.locator(selector).count() == 0, (page.url, selector)


def test_viewer_sees_no_write_action_and_operator_cancel_is_recorded(
    page: Any, serve: Serve
) -> None:
    viewer = _key(serve, "eyes", "viewer")
    operator = _key(serve, "ops-key", "operator")
    with serve.client() as client:
        done = client.post("/api/workflows/greeter/execute", json={"input": {"name": "A"}})
        finished = wait_execution(client, done.json()["executionId"])
        slow = client.post("/api/workflows/slow/execute", json={}).json()["executionId"]
        wait_execution(client, slow, statuses={"running"})

    login(page, viewer)
    assert page.locator("#who").inner_text().split() == ["eyes", "viewer"]
    _no_write_buttons(page)
    for path in (
        "/workflows",
        "/workflows/greeter",
        f"/executions/{slow}",
        f"/executions/{finished['id']}",
    ):
        page.goto(path)
        page.wait_for_selector("#who")
        _no_write_buttons(page)
    page.goto("/workflows/greeter")
    assert "may not start executions" in page.locator("#test-refused").inner_text()
    assert "created by system" in page.locator("#audit").inner_text()  # `serve --apply`

    page.context.clear_cookies()
    login(page, operator)
    page.goto(f"/executions/{slow}")
    wait_live(page)
    assert page.locator("#who").inner_text().split() == ["ops-key", "operator"]
    assert page.locator("#rerun-button").is_hidden()
    page.click("#cancel-button")
    page.wait_for_selector("#execution-head[data-status=cancelled]")
    line = page.locator("#audit li", has_text=re.compile(r"^cancelled by ops-key"))
    line.wait_for()
    assert page.locator("#audit-card").is_visible()
    assert page.locator("#fact-started-by").inner_text() == "API_TOKEN"
    page.reload()  # the line is the server's too, not only the page's
    assert page.locator("#audit li").first.inner_text().startswith("cancelled by ops-key")
    with serve.client() as client:
        audit = client.get(f"/api/executions/{slow}").json()["audit"]
    assert [(a["action"], a["actor"]) for a in audit] == [("execution.cancelled", "ops-key")]


def test_a_trigger_key_gets_a_run_button_for_its_workflows_only(page: Any, serve: Serve) -> None:
    trigger = _key(serve, "ci", "trigger", workflows=["greeter"])
    page.goto("/login")
    page.fill("#token", trigger)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/workflows$"))  # monitoring is a read: sent to its page
    cards = page.locator(".run-card")
    assert cards.count() == 1 and cards.locator("h2").inner_text() == "greeter"
    cards.locator("textarea").fill('{"name": "Bo"}')
    cards.locator("button[type=submit]").click()
    started = cards.locator('[data-field="started"]')
    started.wait_for()
    page.wait_for_function("document.querySelector('[data-field=started]').dataset.executionId")
    execution_id = started.get_attribute("data-execution-id")
    with serve.client() as client:
        body = wait_execution(client, execution_id)
    assert body["status"] == "completed" and body["triggeredBy"] == "ci"
    page.goto("/workflows/slow")
    assert page.locator("#forbidden").count() == 1
