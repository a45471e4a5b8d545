"""Approval steps on the execution page in a real browser: the message, a comment, Approve and
Reject; the page updates live, the execution goes on (or fails), who decided is shown."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.browser.conftest import (
    ARTIFACTS,
    assert_not_reloaded,
    login,
    mark_page,
    wait_live,
)
from tests.support.process import Serve, wait_execution

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

REFUND = {
    "name": "refund",
    "steps": [
        {
            "key": "review",
            "type": "approval",
            "config": {"message": "Refund {{ input.amount }} EUR to {{ input.who }}?"},
        },
        {"key": "pay", "type": "transform", "config": {"output": "{{ steps.review.output }}"}},
    ],
}
# Waits for an event first: the page is open when the approval starts, so its box appears live.
GATED = {
    "name": "gated",
    "steps": [
        {"key": "ready", "type": "wait", "config": {"event": "ready"}},
        {"key": "review", "type": "approval", "config": {"message": "Go ahead?"}},
        {"key": "go", "type": "log", "config": {"message": "went"}},
    ],
}


def waiting_on(client: httpx.Client, execution_id: str, step_key: str) -> None:
    """Until the execution waits on `step_key` (and on nothing else)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = client.get(f"/api/executions/{execution_id}").json()
        if body["status"] == "waiting" and [w["stepKey"] for w in body["waits"]] == [step_key]:
            return
        time.sleep(0.1)
    raise AssertionError(f"execution {execution_id} never waited on {step_key!r}")


def start(client: httpx.Client, document: dict[str, Any], input: Any) -> str:
    assert client.post("/api/workflows", json=document).status_code == 201
    response = client.post(f"/api/workflows/{document['name']}/execute", json={"input": input})
    assert response.status_code == 202, response.text
    execution_id: str = response.json()["executionId"]
    return execution_id


def test_approve_with_a_comment_and_the_execution_completes_live(page: Any, serve: Serve) -> None:
    with serve.client() as client:
        execution_id = start(client, REFUND, {"amount": 120, "who": "Ada"})
        waiting_on(client, execution_id, "review")
    login(page)
    page.goto(f"/executions/{execution_id}")
    wait_live(page)
    mark_page(page)
    box = page.locator('#wait-note .approval[data-step-key="review"]')
    assert box.locator('[data-field="message"]').inner_text() == "Refund 120 EUR to Ada?"
    assert "waiting for a decision" in box.inner_text()
    box.locator("textarea").fill("checked the invoice")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "approval_waiting_for_a_decision.png"), full_page=True)
    box.locator('button[data-decide="approve"]').click()

    page.wait_for_selector("#execution-head[data-status=completed]")
    page.wait_for_selector('.step[data-step-key="pay"][data-status="completed"]')
    decision = page.locator('.step[data-step-key="review"] [data-field="decision"]')
    assert decision.is_visible()
    text = decision.inner_text()
    assert text.startswith("Approved by API_TOKEN at ") and text.endswith(": checked the invoice")
    assert page.locator("#wait-note").is_hidden()
    page.wait_for_selector('#audit li[data-action="step.approved"]')
    assert "step review approved by API_TOKEN" in page.locator("#audit").inner_text()
    assert_not_reloaded(page)

    with serve.client() as client:
        body = wait_execution(client, execution_id)
        output = {s["stepKey"]: s for s in body["steps"]}["review"]["output"]
        assert output["approved"] is True and output["comment"] == "checked the invoice"
        # A second decision is refused.
        again = client.post(f"/api/executions/{execution_id}/steps/review/reject")
        assert again.status_code == 409 and "already approved" in again.json()["detail"]
    # Loaded afresh, the page still says who decided.
    page.reload()
    decision = page.locator('.step[data-step-key="review"] [data-field="decision"]')
    assert decision.inner_text() == text


def test_reject_on_a_box_that_appeared_live_fails_the_execution(page: Any, serve: Serve) -> None:
    with serve.client() as client:
        execution_id = start(client, GATED, {})
        waiting_on(client, execution_id, "ready")
        login(page)
        page.goto(f"/executions/{execution_id}")
        wait_live(page)
        mark_page(page)
        assert page.locator("#wait-note .approval").count() == 0
        posted = client.post("/api/events", json={"name": "ready"})
        assert posted.status_code == 202 and posted.json()["matched"] == 1
    box = page.locator('#wait-note .approval[data-step-key="review"]')
    box.wait_for()
    assert box.locator('[data-field="message"]').inner_text() == "Go ahead?"
    box.locator("textarea").fill("not today")
    box.locator('button[data-decide="reject"]').click()

    page.wait_for_selector("#execution-head[data-status=failed]")
    review = page.locator('.step[data-step-key="review"]')
    assert review.get_attribute("data-status") == "failed"
    assert review.locator('[data-field="error"]').inner_text() == "Rejected by API_TOKEN: not today"
    decision = review.locator('[data-field="decision"]')
    assert decision.inner_text().startswith("Rejected by API_TOKEN at ")
    assert page.locator('.step[data-step-key="go"]').get_attribute("data-status") != "completed"
    assert (
        "Step 'review' failed: Rejected by API_TOKEN: not today"
        in page.locator("#execution-error").inner_text()
    )
    assert_not_reloaded(page)
