"""kill -9 of `workflow-engine serve` in the middle of a step; a new `serve` finishes the work."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import StartServe
from tests.support.process import wait_execution
from tests.support.target import Target

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_during_a_step_then_restart_completes_without_rerunning_done_steps(
    backend: str,
    start_serve: StartServe,
    target: Target,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    env: dict[str, str | None] = {}
    if backend == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("private_pg_url")
    name = f"crash-{uuid.uuid4().hex[:8]}"
    document = {
        "name": name,
        "retryMaxAttempts": 3,
        "retryBackoffMs": 100,
        "steps": [
            {"key": "s1", "type": "http", "config": {"url": f"{target.url}/count/{name}"}},
            {"key": "s2", "type": "http", "config": {"url": f"{target.url}/slow?ms=3000"}},
            {
                "key": "s3",
                "type": "transform",
                "config": {"output": {"s1Hits": "{{ steps.s1.output.body.hits }}", "ok": True}},
            },
        ],
    }
    first = start_serve(env)
    with first.client() as client:
        assert client.post("/api/workflows", json=document).status_code == 201
        response = client.post(f"/api/workflows/{name}/execute", json={"input": {}})
        assert response.status_code == 202, response.text
        execution_id = response.json()["executionId"]

    deadline = time.monotonic() + 15
    while not target.hits("slow"):
        assert time.monotonic() < deadline, "step s2 never called the target\n" + first.logs()
        time.sleep(0.02)
    first.kill()  # kill -9 while s2's request is in flight
    assert first.proc.returncode == -9

    second = start_serve(env)
    with second.client() as client:
        body = wait_execution(client, execution_id, timeout=30)
    assert body["status"] == "completed", body
    assert body["output"] == {"s1Hits": 1, "ok": True}
    steps = {step["stepKey"]: step for step in body["steps"]}
    assert [steps[key]["status"] for key in ("s1", "s2", "s3")] == ["completed"] * 3

    # (b) the completed step s1 never ran again.
    assert len(target.hits(f"count/{name}")) == 1
    # (d) every try of s2 (the killed one and the one after the restart) had the same key.
    tries = target.hits("slow")
    assert len(tries) >= 2
    assert {hit.idempotency_key for hit in tries} == {f"{execution_id}:s2"}
    assert [hit.idempotency_key for hit in target.hits(f"count/{name}")] == [f"{execution_id}:s1"]
    assert any("resumed after an interruption" in log["message"] for log in body["logs"])
