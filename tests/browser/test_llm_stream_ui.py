"""The execution page of a streamed llm step in Chromium: the answer's text grows on the page as
the model sends it, from its first word even when the page opened mid-stream, and ends as the
whole answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.browser.conftest import TOKEN, assert_not_reloaded, login, mark_page, wait_live
from tests.support.fake_llm import Answer, FakeLlm, run_fake_llm
from tests.support.process import Serve, wait_execution

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

CONTENT = " ".join(f"word{i}" for i in range(80))
WORKFLOW = {
    "name": "streamed",
    "steps": [
        {
            "key": "ask",
            "type": "llm",
            "config": {
                "model": "fake-model",
                "messages": [{"role": "user", "content": "Tell me"}],
                "stream": True,
            },
        }
    ],
}


@pytest.fixture
def fake() -> Iterator[FakeLlm]:
    with run_fake_llm() as server:
        server.script("fake-model", Answer(CONTENT, token_delay_s=0.05))
        yield server


@pytest.fixture
def serve(tmp_path: Path, fake: FakeLlm) -> Iterator[Serve]:
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "streamed.yaml").write_text(yaml.safe_dump(WORKFLOW))
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


def stream_text(page: Any) -> str:
    text: str = page.locator('.step[data-step-key="ask"] [data-field="stream"]').text_content()
    return text


def test_the_answer_grows_on_the_execution_page(page: Any, serve: Serve) -> None:
    login(page)
    with serve.client() as client:
        response = client.post("/api/workflows/streamed/execute", json={"input": {}})
        assert response.status_code == 202, response.text
        execution_id = response.json()["executionId"]
        # Opened once the step streams: the text so far is replayed, then grows.
        wait_execution(
            client,
            execution_id,
            statuses={"running"},
        )
        page.goto(f"/executions/{execution_id}")
        wait_live(page)
        mark_page(page)
        box = '.step[data-step-key="ask"] [data-field="stream"]'
        page.wait_for_selector(f"{box}:not([hidden])")
        seen = stream_text(page)
        assert CONTENT.startswith(seen) and seen
        page.wait_for_function(
            "([sel, n]) => document.querySelector(sel).textContent.length > n",
            arg=[box, len(seen)],
        )
        grown = stream_text(page)
        assert CONTENT.startswith(grown) and len(grown) > len(seen)
        assert page.locator("#execution-head").get_attribute("data-status") == "running"
        page.wait_for_selector("#execution-head[data-status=completed]")
        assert wait_execution(client, execution_id)["output"]["content"] == CONTENT
    assert stream_text(page) == CONTENT
    assert_not_reloaded(page)
