"""kill -9 of the embedded `serve` while executions wait (a timer, an event); a new `serve`
fires the timers from the database and matches the events: each completes once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import StartServe
from tests.support.process import wait_execution
from tests.support.target import Target

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_while_waiting_then_restart_completes_each_once(
    backend: str,
    start_serve: StartServe,
    target: Target,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    env: dict[str, str | None] = {"DURABLE_DELAY_MIN_MS": "500"}
    if backend == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("private_pg_url")
    document = {
        "name": "approve-later",
        "steps": [
            {"key": "s1", "type": "http", "config": {"url": f"{target.url}/count/s1"}},
            {"key": "nap", "type": "delay", "config": {"ms": 2_000}},
            {"key": "paid", "type": "wait", "config": {"event": "paid", "key": "{{ input.id }}"}},
            {"key": "s4", "type": "http", "config": {"url": f"{target.url}/count/s4"}},
        ],
    }
    first = start_serve(env)
    with first.client() as client:
        assert client.post("/api/workflows", json=document).status_code == 201
        ids = []
        for n in range(2):
            response = client.post(
                "/api/workflows/approve-later/execute", json={"input": {"id": n}}
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["executionId"])
        for execution_id in ids:
            body = wait_execution(client, execution_id, statuses={"waiting"})
            assert body["waits"][0]["stepKey"] == "nap"
    first.kill()
    assert first.proc.returncode == -9
    time.sleep(2)  # the timers come due while no process runs

    second = start_serve(env)
    with second.client() as client:
        for n, execution_id in enumerate(ids):
            # The timer fired after the restart: now each waits for its event.
            body = wait_execution(client, execution_id, statuses={"waiting"}, timeout=15)
            deadline = time.monotonic() + 15
            while body["waits"][0]["stepKey"] != "paid":
                assert time.monotonic() < deadline, body
                time.sleep(0.1)
                body = client.get(f"/api/executions/{execution_id}").json()
            response = client.post("/api/events", json={"name": "paid", "key": str(n)})
            assert response.status_code == 202 and response.json()["matched"] == 1
        bodies = [wait_execution(client, execution_id) for execution_id in ids]
    assert [b["status"] for b in bodies] == ["completed", "completed"], bodies
    for body in bodies:
        assert [s["status"] for s in body["steps"]] == ["completed"] * 4
        assert {s["stepKey"]: s["retryCount"] for s in body["steps"]}["s1"] == 0
    assert len(target.hits("count/s1")) == 2
    assert len(target.hits("count/s4")) == 2
