"""The workflows and checks the telemetry tests share (embedded `serve`, and `serve` +
`workers`): a 3-step workflow whose http step calls the test's target, a failing one, and what
the loopback Sentry server and OTLP collector must (and must never) have received."""

from __future__ import annotations

from typing import Any

from tests.support.process import Serve, wait_execution
from tests.support.target import Target
from tests.support.telemetry import Receiver, SpanRecord

SECRET = "sk-never-leaves-7c41"
INPUT_VALUE = "input-value-never-sent-5d2e"
ERROR = 2  # OTLP status code ERROR


def telemetry_env(receiver: Receiver) -> dict[str, str | None]:
    return {
        "SENTRY_DSN": receiver.sentry_dsn,
        "SENTRY_ENVIRONMENT": "e2e",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # the SDK's own variable: export spans within 0.1 s
        "WORKFLOW_SECRET_API_KEY": SECRET,
    }


def three_steps(target: Target) -> dict[str, Any]:
    return {
        "name": "traced",
        "steps": [
            {
                "key": "greet",
                "type": "transform",
                "config": {"output": {"message": "Hello {{ input.name }}"}},
            },
            {
                "key": "call",
                "type": "http",
                "config": {
                    "method": "POST",
                    "url": f"{target.url}/echo",
                    "headers": {"Authorization": "Bearer {{ secrets.API_KEY }}"},
                    "json": {"m": "{{ steps.greet.output.message }}"},
                },
            },
            {"key": "done", "type": "log", "config": {"message": "called the target"}},
        ],
    }


FAILING = {
    "name": "doomed",
    "retryMaxAttempts": 1,
    "steps": [
        {"key": "prepare", "type": "transform", "config": {"output": {"v": "{{ input.card }}"}}},
        {"key": "explode", "type": "fail", "config": {"message": "the warehouse is closed"}},
    ],
}


def trace_of(execution_id: str) -> str:
    """The documented way to find an execution's trace: its id without the dashes."""
    return execution_id.replace("-", "")


def spans_of(receiver: Receiver, execution_id: str, count: int) -> list[SpanRecord]:
    """The spans of the execution's trace, once at least `count` have arrived."""
    trace = trace_of(execution_id)

    def found() -> list[SpanRecord] | None:
        spans = [s for s in receiver.spans() if s.trace_id == trace]
        return spans if len(spans) >= count else None

    return receiver.wait_for(found, f"{count} spans of execution {execution_id}")


def run(serve: Serve, document: dict[str, Any], input: dict[str, Any]) -> dict[str, Any]:
    with serve.client() as client:
        response = client.post("/api/workflows", json=document)
        assert response.status_code == 201, response.text
        response = client.post(f"/api/workflows/{document['name']}/execute", json={"input": input})
        assert response.status_code == 202, response.text
        return wait_execution(client, response.json()["executionId"], timeout=30)


def assert_one_trace_of_three_steps(
    receiver: Receiver, target: Target, execution_id: str, process: str
) -> None:
    spans = spans_of(receiver, execution_id, 4)
    assert len(spans) == 4, spans
    roots = [s for s in spans if s.name == "execution traced"]
    assert len(roots) == 1, spans
    root = roots[0]
    assert root.parent_span_id == ""
    assert root.attributes["execution.id"] == execution_id
    assert root.attributes["workflow.name"] == "traced"
    assert root.attributes["execution.status"] == "completed"
    assert root.resource["service.name"] == "workflow-engine"
    assert root.resource["workflow_engine.process"] == process
    steps = {s.attributes["step.key"]: s for s in spans if s is not root}
    assert set(steps) == {"greet", "call", "done"}
    for key, span in steps.items():
        assert span.name == f"step {key}"
        assert span.parent_span_id == root.span_id
        assert span.attributes["step.status"] == "completed"
        assert span.attributes["step.attempt"] == 1
        assert root.start_ns <= span.start_ns <= span.end_ns <= root.end_ns
    assert steps["call"].attributes["step.type"] == "http"
    # The http step's target saw the trace: traceparent of the `call` step's span.
    (hit,) = target.hits("echo")
    headers = {name.lower(): value for name, value in hit.headers.items()}
    assert headers["traceparent"] == f"00-{trace_of(execution_id)}-{steps['call'].span_id}-01"


def assert_failed_execution_event(
    receiver: Receiver, execution_id: str, process: str
) -> dict[str, Any]:
    events = receiver.wait_for(
        lambda: [
            e
            for e in receiver.events()
            if e.get("contexts", {}).get("execution", {}).get("id") == execution_id
        ],
        f"the Sentry event of failed execution {execution_id}",
    )
    assert len(events) == 1, events
    event = events[0]
    assert event["level"] == "error"
    message = event["message"] if isinstance(event["message"], str) else event["logentry"]
    for part in ("doomed", execution_id, "explode", "the warehouse is closed"):
        assert part in str(message), message
    assert event["tags"]["workflow"] == "doomed"
    assert event["tags"]["status"] == "failed"
    assert event["tags"]["process"] == process
    assert event["environment"] == "e2e"
    assert event["contexts"]["execution"]["failed_step"] == "explode"
    assert event["contexts"]["execution"]["trace_id"] == trace_of(execution_id)
    return event


def assert_nothing_secret_sent(receiver: Receiver, token: str) -> None:
    """Neither a secret, nor an execution's input, nor the API token left the engine."""
    bodies = receiver.bodies()
    assert bodies
    for body in bodies:
        assert SECRET.encode() not in body
        assert INPUT_VALUE.encode() not in body
        assert token.encode() not in body
