"""Telemetry without any server: the ids that tie an execution's spans into one trace, the
failed-execution event, the scrubbing of what Sentry is sent, and that nothing of either library
is loaded (or costs anything) while its setting is empty."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime

from workflow_engine.ids import new_id
from workflow_engine.telemetry import ExecutionEnd, sentry, tracing

END = ExecutionEnd(
    execution_id="01a22c74-b167-79e6-a988-0be1a748319d",
    workflow_id="01a22c74-0000-7000-8000-000000000001",
    workflow_name="enrich-lead",
    version=3,
    status="failed",
    started_at=datetime(2025, 1, 1, 12, 0, tzinfo=UTC),
    error="HTTP 500 from http://api.example/x: oops",
    failed_step="call",
    retries=2,
)


def test_the_trace_id_is_the_execution_id() -> None:
    execution_id = new_id()
    assert f"{tracing.trace_id(execution_id):032x}" == execution_id.replace("-", "")


def test_ids_that_are_not_uuids_still_get_a_stable_trace() -> None:
    assert tracing.trace_id("not-a-uuid") == tracing.trace_id("not-a-uuid")
    assert 0 < tracing.trace_id("not-a-uuid") < 2**128
    assert tracing.trace_id("not-a-uuid") != tracing.trace_id("not-a-uuid2")


def test_the_root_span_id_is_derived_from_the_execution_id_alone() -> None:
    first, second = new_id(), new_id()
    assert tracing.root_span_id(first) == tracing.root_span_id(first)
    assert tracing.root_span_id(first) != tracing.root_span_id(second)
    assert 0 < tracing.root_span_id(first) < 2**64


def test_traceparent_is_w3c_version_00() -> None:
    trace = uuid.UUID("0af76519-16cd-43dd-8448-eb211c80319c").int
    assert (
        tracing.traceparent(trace, 0xB7AD6B7169203331)
        == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    )
    assert tracing.traceparent(1, 2, sampled=False).endswith("-00")


def test_the_endpoint_is_a_base_url_as_the_standard_variable() -> None:
    assert tracing.traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert tracing.traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert tracing.traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


def test_with_tracing_off_a_step_try_gets_the_shared_no_op_span() -> None:
    assert not tracing.enabled()
    span = tracing.step_attempt(new_id(), "call", "step-id", "http", 1)
    assert span is tracing.NO_SPAN
    assert span.traceparent is None
    span.end("failed", "boom", retrying=True)  # nothing happens
    tracing.execution_finished(END)
    sentry.execution_failed(END)


def test_nothing_of_either_library_is_loaded_while_the_settings_are_empty() -> None:
    """The engine, its app, its CLI and a step try, in a fresh interpreter: neither sentry_sdk
    nor OpenTelemetry's tracing SDK or exporter is imported. (redis-py imports the SDK's
    metrics part by itself when it is installed, for its own observability, off by default.)"""
    code = """
import sys
from workflow_engine import cli, telemetry
from workflow_engine.app import create_app
from workflow_engine.engine import executor, workers
from workflow_engine.settings import Settings
settings = Settings(_env_file=None)
telemetry.setup(settings, process="serve")
create_app(settings, token="t")
telemetry.tracing.step_attempt("id", "k", "s", "http", 1).end("completed")
loaded = [m for m in sys.modules if m.startswith(("sentry_sdk", "opentelemetry.sdk.trace",
          "opentelemetry.exporter", "workflow_engine.telemetry.otel"))]
assert not loaded, loaded
"""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr


def test_a_failed_execution_event_names_the_workflow_execution_step_and_error() -> None:
    event = sentry.failed_execution_event(END, trace_id="ab" * 16)
    assert event["message"] == (
        "Execution 01a22c74-b167-79e6-a988-0be1a748319d of workflow 'enrich-lead' failed at "
        "step 'call': HTTP 500 from http://api.example/x: oops"
    )
    assert event["level"] == "error"
    assert event["tags"] == {"workflow": "enrich-lead", "status": "failed", "step": "call"}
    assert event["contexts"]["execution"]["trace_id"] == "ab" * 16
    assert event["contexts"]["execution"]["version"] == 3
    # Grouped per workflow and step, not per execution.
    assert event["fingerprint"] == ["execution-failed", "enrich-lead", "call"]
    assert END.execution_id not in str(event["fingerprint"])


def test_a_failure_without_a_step_says_so() -> None:
    timed_out = ExecutionEnd(
        **{**END.__dict__, "failed_step": None, "error": "Execution timed out after 10 ms"}
    )
    event = sentry.failed_execution_event(timed_out)
    assert event["message"].endswith(
        "of workflow 'enrich-lead' failed: Execution timed out after 10 ms"
    )
    assert "step" not in event["tags"]
    assert "trace_id" not in event["contexts"]["execution"]


def test_scrub_masks_secrets_and_drops_sql_parameters_everywhere() -> None:
    def redact(text: str) -> str:
        return text.replace("s3cr3t-value", "***")

    statement_error = (
        "(sqlite3.IntegrityError) NOT NULL constraint failed: execution_steps.status\n"
        "[SQL: INSERT INTO execution_steps (id, output) VALUES (?, ?)]\n"
        "[parameters: ('01a2', '{\"card\": \"4111 1111\"}')]\n"
        "(Background on this error at: https://sqlalche.me/e/20/gkpj)"
    )
    event = {
        "message": "token s3cr3t-value",
        "exception": {"values": [{"value": statement_error}]},
        "breadcrumbs": {"values": [{"message": "got s3cr3t-value", "data": {"n": 1}}]},
        "extra": ("s3cr3t-value", 2),
    }
    scrubbed = sentry.scrub(event, redact)
    text = str(scrubbed)
    assert "s3cr3t-value" not in text
    assert "4111" not in text
    assert "[SQL: INSERT INTO execution_steps (id, output) VALUES (?, ?)]" in text
    assert "[parameters: not sent]" in text
    assert "sqlalche.me" in text
    assert scrubbed["breadcrumbs"]["values"][0]["data"] == {"n": 1}
    assert sentry.scrub("[parameters: (1, 'x')]", redact) == "[parameters: not sent]"
