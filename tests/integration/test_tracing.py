"""Tracing in one process, spans kept in memory: every try of a step is a span of the
execution's one trace, retries included, and the root span says how the execution ended."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tests.conftest import StartEngine
from tests.support.flows import start
from tests.support.target import Target
from workflow_engine.telemetry import tracing

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.setup("http://unused", service_name="engine-test", process="test", exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()


async def test_each_try_of_a_step_is_a_span_of_the_execution_trace(
    db_url: str, start_engine: StartEngine, target: Target, spans: InMemorySpanExporter
) -> None:
    running = await start(start_engine, db_url, retry_jitter=0)
    await running.create_workflow(
        {
            "name": "flaky-traced",
            "retryMaxAttempts": 3,
            "retryBackoffMs": 10,
            "steps": [
                {"key": "first", "type": "transform", "config": {"output": 1}},
                {"key": "call", "type": "http", "config": {"url": f"{target.url}/flaky/t?fail=1"}},
                {"key": "skipped", "type": "log", "if": "{{ false }}", "config": {}},
                {
                    "key": "last",
                    "type": "fail",
                    "retryMaxAttempts": 1,
                    "config": {"message": "stop here"},
                },
            ],
        }
    )
    execution_id = await running.execute("flaky-traced")
    body = await running.wait(execution_id)
    assert body["status"] == "failed"
    tracing.shutdown()  # flushes the batch

    trace = int(execution_id.replace("-", ""), 16)
    found = [s for s in spans.get_finished_spans() if s.context.trace_id == trace]
    (root,) = [s for s in found if s.name == "execution flaky-traced"]
    assert root.parent is None
    assert root.context.span_id == tracing.root_span_id(execution_id)
    assert root.attributes is not None
    assert root.attributes["execution.status"] == "failed"
    assert root.attributes["execution.failed_step"] == "last"
    assert root.attributes["execution.retries"] == 1
    assert root.status.status_code == StatusCode.ERROR

    tries = [s for s in found if s is not root]
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in tries)
    summary = [
        (
            s.attributes["step.key"],
            s.attributes["step.attempt"],
            s.attributes["step.status"],
            s.attributes.get("step.retrying", False),
        )
        for s in sorted(tries, key=lambda s: s.start_time or 0)
        if s.attributes is not None
    ]
    # A skipped step made no try, so it has no span.
    assert summary == [
        ("first", 1, "completed", False),
        ("call", 1, "failed", True),
        ("call", 2, "completed", False),
        ("last", 1, "failed", False),
    ]
    call_tries = [s for s in tries if s.name == "step call"]
    assert call_tries[0].status.status_code == StatusCode.ERROR
    # Each try of the http step sent its own span as the parent.
    sent = [hit.headers.get("traceparent") for hit in target.hits("flaky/t")]
    assert sent == [f"00-{trace:032x}-{s.context.span_id:016x}-01" for s in call_tries]
