"""Browser tests: Playwright drives Debian's /usr/bin/chromium against a real
`workflow-engine serve` process. Locally they skip when Chromium is missing; under CI=true they
fail. Every test saves a screenshot under test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.process import REPO, Serve
from tests.support.services import in_ci

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "browser-token"
ARTIFACTS = REPO / "test-artifacts"
VENDOR = REPO / "src/workflow_engine/web/static/vendor"
VENDOR_JS = VENDOR / "socket.io.min.js"
VENDOR_FILES = (VENDOR_JS, VENDOR / "uPlot.iife.min.js", VENDOR / "uPlot.min.css")

WORKFLOWS: dict[str, dict[str, Any]] = {
    "greeter": {
        "name": "greeter",
        "description": "Three quick steps",
        "steps": [
            {
                "key": "greet",
                "type": "transform",
                "config": {"output": {"m": "Hi {{ input.name }}"}},
            },
            {"key": "pause", "type": "delay", "config": {"ms": 300}},
            {"key": "done", "type": "log", "config": {"message": "{{ steps.greet.output.m }}"}},
        ],
    },
    "slow": {
        "name": "slow",
        "steps": [
            {"key": "warm_up", "type": "delay", "config": {"ms": 200}},
            {"key": "long_wait", "type": "delay", "config": {"ms": 60000}},
            {"key": "after", "type": "log", "config": {"message": "never reached"}},
        ],
    },
}

pytestmark = pytest.mark.browser


def _require_browser() -> None:
    problems = []
    if not Path(CHROMIUM).exists():
        problems.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    for path in VENDOR_FILES:
        if not path.exists():
            problems.append(f"{path.relative_to(REPO)} is missing (make install)")
    if not problems:
        return
    message = "; ".join(problems)
    if in_ci():
        pytest.fail(f"{message} (CI=true: browser tests must run)")
    pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Per test: Playwright's sync API holds an event loop in this thread while it runs, which
    would break every async test that comes after if it outlived the browser tests."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """`workflow-engine serve` (embedded mode) with the test workflows applied."""
    folder = tmp_path / "workflows"
    folder.mkdir()
    for name, document in WORKFLOWS.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(document))
    env: dict[str, str | None] = {
        "DATA_DIR": str(tmp_path / "data"),
        "API_TOKEN": TOKEN,
        "RECONCILE_INTERVAL_MS": "500",
    }
    server = Serve(tmp_path, env, args=("--apply", str(folder)), name="serve")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture
def page(browser: Any, serve: Serve, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no cookie) on `serve`; screenshot saved at the end."""
    context = browser.new_context(base_url=serve.url, viewport={"width": 1360, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield tab
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def login(page: Any, token: str = TOKEN) -> None:
    page.goto("/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/monitoring$"))


def wait_live(page: Any) -> None:
    """Until the page's socket is connected (the indicator in the top bar says 'live')."""
    page.wait_for_selector("#live-indicator[data-state=on]")


def mark_page(page: Any) -> None:
    """Set a flag a reload would clear: checked at the end to prove nothing reloaded."""
    page.evaluate("window.__noReload = true")


def assert_not_reloaded(page: Any) -> None:
    assert page.evaluate("window.__noReload === true"), "the page was reloaded"
