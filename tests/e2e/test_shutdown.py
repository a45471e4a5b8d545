"""SIGTERM: `serve` stops taking work, lets the running step finish within the grace, exits 0."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

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
