"""The getting-started flow: `serve --apply examples`, curl-style API calls, and the CLI client."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.e2e.conftest import TOKEN, StartServe
from tests.support.flows import parse_time
from tests.support.process import REPO, run_cli, wait_execution

pytestmark = pytest.mark.e2e

EXAMPLES = str(REPO / "examples")


def test_hello_world_over_the_api_and_the_cli(start_serve: StartServe, tmp_path: Path) -> None:
    serve = start_serve(args=("--apply", EXAMPLES))
    with serve.client() as client:
        response = client.post(
            "/api/workflows/hello-world/execute", json={"input": {"name": "Ada"}}
        )
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "pending"
        execution_id = response.json()["executionId"]

        body = wait_execution(client, execution_id, timeout=20)
        assert body["status"] == "completed", body
        assert body["output"]["greeting"] == "Hello Ada!"
        assert body["output"]["executionId"] == execution_id
        assert [s["stepKey"] for s in body["steps"]] == ["greet", "pause", "summary"]
        assert body["durationMs"] >= 500

        listed = client.get("/api/executions", params={"workflowId": "hello-world"}).json()
        assert execution_id in [e["id"] for e in listed["executions"]]

    client_env = {"DATA_DIR": str(tmp_path / "cli-data")}
    connection = ["--url", serve.url, "--token", TOKEN]
    run = run_cli(
        ["run", "hello-world", "-i", '{"name":"Bob"}', "--watch", *connection],
        tmp_path,
        client_env,
        timeout=30,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "completed" in run.stdout
    assert "Hello Bob!" in run.stdout

    applied = run_cli(["apply", EXAMPLES, *connection], tmp_path, client_env, timeout=30)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "hello-world" in applied.stdout

    # A client without the token is told so, in one line.
    refused = run_cli(["run", "hello-world", "--url", serve.url], tmp_path, client_env)
    assert refused.returncode != 0
    assert "401" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_migrate_creates_a_fresh_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "engine.db"
    result = run_cli(["migrate"], tmp_path, {"DATABASE_URL": f"sqlite:///{path}"}, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert {"workflows", "executions", "execution_steps", "execution_logs"} <= tables
    again = run_cli(["migrate"], tmp_path, {"DATABASE_URL": f"sqlite:///{path}"}, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr


def test_the_graphs_example_runs_as_written(start_serve: StartServe) -> None:
    """The README's "Graphs" example: fan-out + map + sub-workflow, with its input file."""
    serve = start_serve(args=("--apply", EXAMPLES))
    body_json = (REPO / "examples" / "inputs" / "research-digest.json").read_text()
    with serve.client() as client:
        response = client.post(
            "/api/workflows/research-digest/execute",
            content=body_json,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 202, response.text
        body = wait_execution(client, response.json()["executionId"], timeout=30)
    assert body["status"] == "completed", body
    output = body["output"]
    assert output["topic"] == "durable execution"
    assert output["totalWords"] == 59
    assert output["source"] == "lookup took 300 ms"
    assert [d["title"] for d in output["documents"]] == [
        "Checkpoints",
        "Leases",
        "Idempotency",
        "Fan-out",
    ]
    assert [s["stepKey"] for s in body["steps"]] == [
        "lookup",
        "summarise",
        *[f"summarise[{i}]" for i in range(4)],
        "join",
        "announce",
    ]
    assert len(body["children"]) == 4
    steps = {s["stepKey"]: s for s in body["steps"]}
    # The two branches ran at the same time.
    assert parse_time(steps["summarise"]["startedAt"]) < parse_time(steps["lookup"]["completedAt"])
