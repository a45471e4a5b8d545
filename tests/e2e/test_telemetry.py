"""Error tracking and tracing, with `serve` run as a user runs it: SENTRY_DSN pointing at a
loopback Sentry server and OTEL_EXPORTER_OTLP_ENDPOINT at a loopback OTLP collector (both in
tests/support/telemetry.py), the http step calling the test's own target."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import TOKEN, StartServe
from tests.support.process import wait_execution
from tests.support.target import Target
from tests.support.telemetry import Receiver, run_receiver
from tests.support.telemetry_flows import (
    ERROR,
    FAILING,
    INPUT_VALUE,
    assert_failed_execution_event,
    assert_nothing_secret_sent,
    assert_one_trace_of_three_steps,
    run,
    spans_of,
    telemetry_env,
    three_steps,
    trace_of,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with run_receiver() as running:
        yield running


def test_serve_sends_a_failed_execution_an_unhandled_error_and_one_trace_per_execution(
    start_serve: StartServe, target: Target, receiver: Receiver, tmp_path: Path
) -> None:
    serve = start_serve(telemetry_env(receiver))

    traced = run(serve, three_steps(target), {"name": INPUT_VALUE})
    assert traced["status"] == "completed", traced
    assert_one_trace_of_three_steps(receiver, target, traced["id"], "serve")

    failed = run(serve, FAILING, {"card": INPUT_VALUE})
    assert failed["status"] == "failed", failed
    assert_failed_execution_event(receiver, failed["id"], "serve")
    spans = {s.name: s for s in spans_of(receiver, failed["id"], 3)}
    root = spans["execution doomed"]
    assert root.status_code == ERROR
    assert root.attributes["execution.status"] == "failed"
    assert root.attributes["execution.failed_step"] == "explode"
    assert spans["step explode"].status_code == ERROR
    assert spans["step explode"].attributes["step.error"] == "the warehouse is closed"

    # An unhandled error, honestly provoked: a row damaged outside the engine (its JSON cut
    # short, as a bad manual edit or a torn write would leave it) makes the API's read of it
    # raise, and the request is answered 500.
    with sqlite3.connect(tmp_path / "data" / "workflow-engine.db", timeout=10) as db:
        db.execute(
            "UPDATE executions SET input = ? WHERE id = ?",
            (f'{{"name": "{INPUT_VALUE}"', traced["id"]),
        )
    with serve.client() as client:
        assert client.get(f"/api/executions/{traced['id']}").status_code == 500

    def decode_errors() -> list[dict[str, Any]]:
        return [
            e
            for e in receiver.events()
            if any(v["type"] == "JSONDecodeError" for v in e.get("exception", {}).get("values", []))
        ]

    (crash,) = receiver.wait_for(decode_errors, "the Sentry event of the 500")
    (error,) = [v for v in crash["exception"]["values"] if v["type"] == "JSONDecodeError"]
    assert crash["transaction"] == "/api/executions/{execution_id}"
    assert crash["request"]["url"].endswith(f"/api/executions/{traced['id']}")
    headers = {name.lower(): value for name, value in crash["request"].get("headers", {}).items()}
    assert headers.get("authorization", "") in ("", "[Filtered]"), headers
    frames = error["stacktrace"]["frames"]
    assert frames and not any("vars" in frame for frame in frames)  # no local variables

    assert serve.terminate() == 0
    assert_nothing_secret_sent(receiver, TOKEN)


def test_a_redelivered_execution_stays_one_trace(
    start_serve: StartServe, target: Target, receiver: Receiver
) -> None:
    """kill -9 of `serve` in the middle of a step; the `serve` started after it finishes the
    execution: the steps of both deliveries are children of the one root span, exported once."""
    env = telemetry_env(receiver)
    document = {
        "name": "crashing",
        "steps": [
            {"key": "s1", "type": "http", "config": {"url": f"{target.url}/count/s1"}},
            {"key": "s2", "type": "http", "config": {"url": f"{target.url}/slow?ms=3000"}},
            {"key": "s3", "type": "transform", "config": {"output": {"ok": True}}},
        ],
    }
    first = start_serve(env)
    with first.client() as client:
        assert client.post("/api/workflows", json=document).status_code == 201
        response = client.post("/api/workflows/crashing/execute", json={"input": {}})
        execution_id = response.json()["executionId"]
    # s1's span is exported (by the first process) before s2's request is cut off.
    spans_of(receiver, execution_id, 1)
    deadline = time.monotonic() + 15
    while not target.hits("slow"):
        assert time.monotonic() < deadline, first.logs()
        time.sleep(0.02)
    first.kill()

    second = start_serve(env)
    with second.client() as client:
        body = wait_execution(client, execution_id, timeout=30)
    assert body["status"] == "completed", body
    spans = spans_of(receiver, execution_id, 4)
    roots = [s for s in spans if s.name == "execution crashing"]
    assert len(roots) == 1, spans
    root = roots[0]
    assert sorted(s.attributes["step.key"] for s in spans if s is not root) == ["s1", "s2", "s3"]
    assert {s.parent_span_id for s in spans if s is not root} == {root.span_id}
    # Both tries of s2 (the one cut off and the one after the restart) sent this trace.
    parents = {hit.headers.get("traceparent", "").split("-")[1] for hit in target.hits("slow")}
    assert parents == {trace_of(execution_id)}
    assert second.terminate() == 0
