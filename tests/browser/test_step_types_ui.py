"""The editor lists the step types beside the text, a plugin's included, and still reports an
unknown type in place."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import TOKEN, login
from tests.support.plugins import DISTRIBUTION, install_plugin
from tests.support.process import Serve

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """`serve` with the test plugin installed beside it (overrides conftest's)."""
    site = install_plugin(tmp_path / "plugin")
    env: dict[str, str | None] = {
        "DATA_DIR": str(tmp_path / "data"),
        "API_TOKEN": TOKEN,
        "PYTHONPATH": str(site),
    }
    server = Serve(tmp_path, env, name="serve")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def test_the_editor_lists_step_types_and_flags_unknown_ones(page: Any, serve: Serve) -> None:
    login(page)
    page.goto("/workflows")
    page.click("#new-workflow")
    shout = page.locator('#step-types dt[data-step-type="shout"]')
    shout.wait_for()
    assert DISTRIBUTION in shout.inner_text()
    described = page.locator('#step-types dt[data-step-type="shout"] + dd').inner_text()
    assert described.startswith("Upper-case text;") and "config: text" in described
    names = page.locator("#step-types dt").evaluate_all("els => els.map(e => e.dataset.stepType)")
    assert names == [
        "approval",
        "delay",
        "fail",
        "http",
        "llm",
        "log",
        "map",
        "shout",
        "transform",
        "wait",
        "workflow",
    ]
    assert (
        page.locator('#step-types dt[data-step-type="shout"] + dd code').first.inner_text()
        == "text"
    )
    assert page.locator("#step-types-status").is_hidden()
    page.fill("#editor-text", "name: x\nsteps:\n  - key: a\n    type: whisper\n")
    page.wait_for_selector("#editor-problems li")
    assert "unknown step type 'whisper'" in page.locator("#editor-problems").inner_text()
