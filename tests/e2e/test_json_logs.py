"""LOG_FORMAT=json: every line `serve` prints while running the README flow is one JSON object
with time, level, logger and message; the worker lines keep their text as the message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import TOKEN, StartServe
from tests.support.process import REPO, EngineProcess, run_cli, wait_execution

pytestmark = pytest.mark.e2e

EXAMPLES = str(REPO / "examples")
FIELDS = {"time", "level", "logger", "message"}


def json_lines(process: EngineProcess) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(stdout, stderr) of a process as parsed objects; fails on any line that is not one."""
    parsed: list[list[dict[str, Any]]] = []
    for name, text in (("stdout", process.stdout()), ("stderr", process.stderr())):
        objects = []
        for n, line in enumerate(text.splitlines(), 1):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                raise AssertionError(
                    f"{process.name} {name} line {n} is not JSON: {line!r}"
                ) from None
            assert isinstance(entry, dict) and set(entry) >= FIELDS, (name, n, line)
            objects.append(entry)
        parsed.append(objects)
    return parsed[0], parsed[1]


def test_serve_prints_only_json_lines_through_the_readme_flow(
    start_serve: StartServe, tmp_path: Path
) -> None:
    serve = start_serve(env={"LOG_FORMAT": "json"}, args=("--apply", EXAMPLES))
    with serve.client() as client:
        response = client.post(
            "/api/workflows/hello-world/execute", json={"input": {"name": "Ada"}}
        )
        assert response.status_code == 202, response.text
        body = wait_execution(client, response.json()["executionId"], timeout=20)
        assert body["output"]["greeting"] == "Hello Ada!"
        assert client.get("/metrics").status_code == 200
    connection = ["--url", serve.url, "--token", TOKEN]
    run = run_cli(
        ["run", "hello-world", "-i", '{"name":"Bob"}', "--watch", *connection],
        tmp_path,
        {"DATA_DIR": str(tmp_path / "cli-data")},
        timeout=30,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert serve.terminate() == 0

    stdout, _stderr = json_lines(serve)
    messages = [entry["message"] for entry in stdout]
    assert f"[Workflow Engine] Listening on {serve.url}" in messages
    assert "[Workflow Engine] Starting workers..." in messages
    assert "[Executor] Worker started with concurrency 5" in messages
    assert "[Workflow Engine] All systems ready" in messages
    starting = stdout[messages.index("[Workflow Engine] Starting workers...")]
    assert starting["level"] == "INFO" and starting["logger"] == "workflow_engine.console"


def test_text_stays_the_default(start_serve: StartServe) -> None:
    serve = start_serve()
    assert serve.terminate() == 0
    assert "[Workflow Engine] Listening on" in serve.stdout().splitlines()[0]
