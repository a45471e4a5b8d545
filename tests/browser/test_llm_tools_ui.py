"""The execution page of an llm step calling workflows as tools, in Chromium: each tool call's
child execution is a link on the step, the first one there when the page opens, the next one
added while the page is open (no reload), both leading to the child's page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.browser.conftest import TOKEN, assert_not_reloaded, login, mark_page, wait_live
from tests.support.fake_llm import Answer, Call, FakeLlm, run_fake_llm
from tests.support.graphs import wait_for
from tests.support.process import Serve, wait_execution

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

# Each tool call's child waits for the event `go` keyed by its call: the test lets them end.
TOOL = {
    "name": "gated",
    "steps": [
        {
            "key": "gate",
            "type": "wait",
            "config": {"event": "go", "key": "call{{ input.n }}", "timeoutMs": 60000},
        }
    ],
}
AGENT = {
    "name": "agent",
    "steps": [
        {
            "key": "ask",
            "type": "llm",
            "config": {
                "model": "agent-model",
                "messages": [{"role": "user", "content": "Go"}],
                "tools": ["gated"],
            },
        }
    ],
}


@pytest.fixture
def fake() -> Iterator[FakeLlm]:
    with run_fake_llm() as server:
        server.script(
            "agent-model",
            Answer("", tool_calls=(Call("gated", {"n": 1}), Call("gated", {"n": 2}))),
            Answer("both done"),
        )
        yield server


@pytest.fixture
def serve(tmp_path: Path, fake: FakeLlm) -> Iterator[Serve]:
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "gated.yaml").write_text(yaml.safe_dump(TOOL))
    (folder / "agent.yaml").write_text(yaml.safe_dump(AGENT))
    env: dict[str, str | None] = {
        "DATA_DIR": str(tmp_path / "data"),
        "API_TOKEN": TOKEN,
        "LLM_BASE_URL": fake.url,
    }
    server = Serve(tmp_path, env, args=("--apply", str(folder)), name="serve")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def test_tool_call_children_are_linked_on_the_execution_page(page: Any, serve: Serve) -> None:
    login(page)
    links = '.step[data-step-key="ask"] [data-field="tools"] a'
    with serve.client() as client:
        response = client.post("/api/workflows/agent/execute", json={"input": {}})
        assert response.status_code == 202, response.text
        execution_id = response.json()["executionId"]

        def children() -> list[dict[str, Any]]:
            body = client.get(f"/api/executions/{execution_id}").json()
            found: list[dict[str, Any]] = body["children"]
            return found

        [first] = wait_for(children, "the first tool call's child")
        page.goto(f"/executions/{execution_id}")
        wait_live(page)
        mark_page(page)
        assert page.locator(links).count() == 1
        assert page.locator(links).first.get_attribute("href") == f"/executions/{first['id']}"

        assert client.post("/api/events", json={"name": "go", "key": "call1"}).status_code == 202
        second = wait_for(lambda: children()[1:], "the second tool call's child")[0]
        page.wait_for_selector(f'{links}[href="/executions/{second["id"]}"]')
        assert page.locator(links).count() == 2
        assert client.post("/api/events", json={"name": "go", "key": "call2"}).status_code == 202
        page.wait_for_selector("#execution-head[data-status=completed]")
        assert wait_execution(client, execution_id)["output"]["content"] == "both done"
        assert_not_reloaded(page)
        page.locator(links).nth(1).click()
        page.wait_for_url(f"**/executions/{second['id']}")
