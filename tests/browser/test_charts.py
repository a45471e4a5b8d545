"""The charts (issue 13, item 9): after a mix of completed and failed executions, /monitoring and a
workflow's page show those counts (read from each chart's text summary and the failure-rate
table), and an execution that finishes later moves them without a reload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.browser.conftest import (
    ARTIFACTS,
    TOKEN,
    assert_not_reloaded,
    login,
    mark_page,
    wait_live,
)
from tests.support.process import Serve, wait_execution

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

WORKFLOWS: dict[str, dict[str, Any]] = {
    "fine": {
        "name": "fine",
        "steps": [
            {"key": "hi", "type": "transform", "config": {"output": {"m": "hi"}}},
            {"key": "nap", "type": "delay", "config": {"ms": 50}},
        ],
    },
    "broken": {
        "name": "broken",
        "retryMaxAttempts": 1,
        "steps": [{"key": "boom", "type": "fail", "config": {"message": "boom"}}],
    },
}
STATUS_SUMMARY = '#chart-status [data-field="summary"]'


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    folder = tmp_path / "workflows"
    folder.mkdir()
    for name, document in WORKFLOWS.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(document))
    env: dict[str, str | None] = {"DATA_DIR": str(tmp_path / "data"), "API_TOKEN": TOKEN}
    server = Serve(tmp_path, env, args=("--apply", str(folder)), name="serve")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def run(client: Any, workflow: str, times: int) -> None:
    ids = [
        client.post(f"/api/workflows/{workflow}/execute", json={"input": {}}).json()["executionId"]
        for _ in range(times)
    ]
    for execution_id in ids:
        wait_execution(client, execution_id)


def shown(page: Any) -> dict[str, str]:
    """What the status chart's summary says, and its counts (data attributes)."""
    summary = page.locator(STATUS_SUMMARY)
    counts: dict[str, str] = summary.evaluate("el => ({...el.dataset})")
    return {**counts, "text": summary.inner_text()}


def wait_counts(page: Any, **expected: int) -> None:
    """Until the status chart's summary holds these counts."""
    page.wait_for_function(
        """([selector, expected]) => {
             const data = document.querySelector(selector).dataset;
             return Object.entries(expected).every(([k, v]) => data[k] === String(v));
           }""",
        arg=[STATUS_SUMMARY, expected],
    )


def rate_rows(page: Any) -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = page.evaluate(
        """() => Object.fromEntries(
              [...document.querySelectorAll('#failure-rates tbody tr')].map((tr) => [
                tr.querySelector('a').textContent,
                {...tr.dataset, label: tr.querySelector('.rate-label').textContent},
              ]))"""
    )
    return rows


def test_charts_show_the_counts_and_follow_new_executions(page: Any, serve: Serve) -> None:
    with serve.client() as client:
        run(client, "fine", 3)
        run(client, "broken", 2)
        broken_id = client.get("/api/workflows/broken").json()["id"]

        login(page)
        wait_live(page)
        mark_page(page)
        wait_counts(page, finished=5, completed=3, failed=2, cancelled=0)
        summary = shown(page)
        assert summary["window"] == "1h"
        assert "5 executions finished: 3 completed, 2 failed, 0 cancelled" in summary["text"]
        assert "failure rate 40%" in summary["text"]
        assert page.locator("#chart-status .chart-plot canvas").count() >= 1
        assert page.locator("#chart-duration .chart-plot canvas").count() >= 1
        durations = page.locator('#chart-duration [data-field="summary"]')
        assert "p50" in durations.inner_text() and durations.get_attribute("data-p50-ms")
        rows = rate_rows(page)
        assert list(rows) == ["broken", "fine"]  # highest failure rate first
        assert rows["broken"]["failed"] == "2" and rows["broken"]["label"] == "100% (2 of 2)"
        assert rows["fine"]["completed"] == "3" and rows["fine"]["label"] == "0% (0 of 3)"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "charts-monitoring.png"), full_page=True)

        # A new execution moves them, without a reload.
        run(client, "broken", 1)
        wait_counts(page, finished=6, completed=3, failed=3)
        assert rate_rows(page)["broken"]["label"] == "100% (3 of 3)"
        run(client, "fine", 1)
        wait_counts(page, finished=7, completed=4, failed=3)
        assert rate_rows(page)["fine"]["label"] == "0% (0 of 4)"
        assert_not_reloaded(page)

        # The last 24 hours hold the same executions, in 15-minute buckets.
        page.click('.window-switch button[data-window="24h"]')
        page.wait_for_selector(f'{STATUS_SUMMARY}[data-window="24h"]')
        wait_counts(page, finished=7, completed=4, failed=3)
        assert "per 15 minutes" in page.locator("#charts-period").inner_text()
        page.screenshot(path=str(ARTIFACTS / "charts-monitoring-24h.png"), full_page=True)

        # The workflow's page: that workflow's executions only.
        page.goto(f"/workflows/{broken_id}")
        wait_live(page)
        mark_page(page)
        wait_counts(page, finished=3, completed=0, failed=3, cancelled=0)
        assert "failure rate 100%" in shown(page)["text"]
        assert page.locator("#failure-rates").count() == 0
        # Its test panel runs it again: the charts follow.
        page.click("#test-run")
        page.wait_for_selector("#test-result[data-status=failed]")
        wait_counts(page, finished=4, failed=3 + 1)
        # Another workflow's executions are not counted here.
        run(client, "fine", 1)
        run(client, "broken", 1)
        wait_counts(page, finished=5, completed=0, failed=5)
        assert_not_reloaded(page)
        page.screenshot(path=str(ARTIFACTS / "charts-workflow.png"), full_page=True)
