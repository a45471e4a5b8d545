"""SIGTERM: `serve` stops taking work, lets the running step finish within the grace, exits 0."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import StartServe
from tests.support.process import wait_execution

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_when_idle_exits_0_quickly(start_serve: StartServe, sig: int) -> None:
    serve = start_serve()
    started = time.monotonic()
    serve.proc.send_signal(sig)
    assert serve.wait_exit(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert "Traceback" not in serve.stderr()


def test_sigterm_during_a_step_lets_it_finish_then_exits_0(
    start_serve: StartServe, tmp_path: Path
) -> None:
    serve = start_serve({"SHUTDOWN_GRACE_MS": "10000"})
    document = {
        "name": "slow-delay",
        "steps": [
            {"key": "wait", "type": "delay", "config": {"ms": 1500}},
            {"key": "after", "type": "transform", "config": {"output": {"done": True}}},
        ],
    }
    with serve.client() as client:
        assert client.post("/api/workflows", json=document).status_code == 201
        response = client.post("/api/workflows/slow-delay/execute", json={"input": {}})
        assert response.status_code == 202
        execution_id = response.json()["executionId"]
        running = wait_execution(client, execution_id, timeout=10, statuses={"running"})
        assert running["status"] == "running"

    sent = time.monotonic()
    code = serve.terminate(timeout=15)
    took = time.monotonic() - sent
    assert code == 0
    assert took < 10, took
    assert "Traceback" not in serve.stderr()

    # Read the database itself: a restart would recover the execution and hide a lost one.
    with sqlite3.connect(tmp_path / "data" / "workflow-engine.db") as db:
        status, output = db.execute(
            "SELECT status, output FROM executions WHERE id = ?", (execution_id,)
        ).fetchone()
        steps = dict(
            db.execute(
                "SELECT step_key, status FROM execution_steps WHERE execution_id = ?",
                (execution_id,),
            ).fetchall()
        )
    assert status == "completed", (status, steps)
    assert steps == {"wait": "completed", "after": "completed"}
    assert '"done": true' in output or '"done":true' in output


def test_graceful_hand_backs_do_not_count_as_deliveries(start_serve: StartServe) -> None:
    """Two stops past the grace period in the middle of one execution, with MAX_DELIVERIES=2:
    each hands the execution back, none of them is a crash, and it still completes."""
    env = {"SHUTDOWN_GRACE_MS": "0", "MAX_DELIVERIES": "2"}
    document = {
        "name": "handed-back",
        "steps": [{"key": "wait", "type": "delay", "config": {"ms": 2500}}],
    }
    serve = start_serve(env)
    with serve.client() as client:
        assert client.post("/api/workflows", json=document).status_code == 201
        execution_id = client.post("/api/workflows/handed-back/execute", json={}).json()[
            "executionId"
        ]
    for handed_back in range(2):
        with serve.client() as client:
            # This serve runs it: its delivery has begun (the resumed line of the last hand-back).
            deadline = time.monotonic() + 20
            while _resumed(client.get(f"/api/executions/{execution_id}").json()) < handed_back:
                assert time.monotonic() < deadline, "the execution was not picked up again"
                time.sleep(0.05)
            wait_execution(client, execution_id, timeout=15, statuses={"running"})
            time.sleep(0.3)
        assert serve.terminate(timeout=15) == 0
        serve = start_serve(env)
    with serve.client() as client:
        body = wait_execution(client, execution_id, timeout=30)
    assert body["status"] == "completed", body
    assert _resumed(body) == 2


def _resumed(body: dict[str, Any]) -> int:
    return sum("resumed after an interruption" in e["message"] for e in body["logs"])
