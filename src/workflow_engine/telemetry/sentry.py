"""Error tracking with Sentry (`sentry-sdk`): unhandled errors of `serve` and `workers` and failed
executions.

Off unless SENTRY_DSN is set: `setup` is then never called and `sentry_sdk` never imported.

What is sent:
- unhandled errors: a request the API answers with a 500 (FastAPI/Starlette integration), an
  exception escaping a job handler, a background task or a thread, and every log record at
  ERROR or above (`log.exception(...)` included), with its traceback;
- one event per failed execution (`execution_failed`): workflow name, execution id, the step that
  failed and the error text (as stored: secrets masked), tagged `workflow` and `status`, grouped
  per workflow and step.

What is never sent: local variables of stack frames (where step inputs, outputs and secret values
live while a step runs), request bodies, cookies and Authorization headers, executions' input or
output. Every string of an event goes through `scrub` before it leaves: secret values
(WORKFLOW_SECRET_*) are masked and SQLAlchemy's `[parameters: ...]` (the values of a failed
statement) removed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from workflow_engine.telemetry.execution_end import ExecutionEnd

FLUSH_S = 2.0
_SQL_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\n\(Background on this error|\s*\Z)", re.S)

_enabled = False
_redact: Callable[[str], str] = str


def setup(
    dsn: str,
    *,
    environment: str | None,
    traces_sample_rate: float,
    process: str,
    release: str,
    redact: Callable[[str], str],
) -> None:
    """Initialise the Sentry SDK for this process. Call once, at start, after the logging set-up
    (the logging integration then sees every record)."""
    global _enabled, _redact
    import sentry_sdk
    from sentry_sdk.integrations.fastapi import FastApiIntegration
    from sentry_sdk.integrations.starlette import StarletteIntegration

    _redact = redact
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        # 0 is "no transactions at all" (None), not "tracing on, nothing sampled".
        traces_sample_rate=traces_sample_rate or None,
        # Never: frames' local variables hold step inputs, outputs and secret values.
        include_local_variables=False,
        send_default_pii=False,
        max_request_body_size="never",
        # Only the integrations chosen here (no httpx one adding headers to an http step's
        # requests, no database ones recording statements).
        auto_enabling_integrations=False,
        integrations=[StarletteIntegration(), FastApiIntegration()],
        trace_propagation_targets=[],
        before_send=_before_send,
        before_send_transaction=_before_send,
    )
    sentry_sdk.set_tag("process", process)
    _enabled = True


def shutdown() -> None:
    """Send what is queued (bounded)."""
    global _enabled
    if not _enabled:
        return
    import sentry_sdk

    sentry_sdk.flush(timeout=FLUSH_S)
    _enabled = False


def execution_failed(end: ExecutionEnd, *, trace_id: str | None = None) -> None:
    """One event for a failed execution. Sent by sentry's background thread: this returns at
    once."""
    if not _enabled:
        return
    import sentry_sdk

    with sentry_sdk.isolation_scope() as scope:
        # Not the breadcrumbs of whatever else this process did meanwhile.
        scope.clear_breadcrumbs()
        event: Any = failed_execution_event(end, trace_id=trace_id)  # a dict is an Event
        sentry_sdk.capture_event(event)


def failed_execution_event(end: ExecutionEnd, *, trace_id: str | None = None) -> dict[str, Any]:
    """The Sentry event of a failed execution (no input, no output)."""
    where = f" at step '{end.failed_step}'" if end.failed_step else ""
    message = (
        f"Execution {end.execution_id} of workflow '{end.workflow_name}' failed{where}: "
        f"{end.error or 'failed'}"
    )
    execution: dict[str, Any] = {
        "id": end.execution_id,
        "workflow_id": end.workflow_id,
        "workflow_name": end.workflow_name,
        "version": end.version,
        "failed_step": end.failed_step,
        "error": end.error,
        "started_at": end.started_at.isoformat(),
        "retries": end.retries,
    }
    if trace_id is not None:
        execution["trace_id"] = trace_id
    tags = {"workflow": end.workflow_name, "status": end.status}
    if end.failed_step:
        tags["step"] = end.failed_step
    return {
        "message": message,
        "level": "error",
        "logger": "workflow_engine.executions",
        "tags": tags,
        "contexts": {"execution": execution},
        # One issue per workflow and failing step, not one per execution.
        "fingerprint": ["execution-failed", end.workflow_name, end.failed_step or ""],
    }


def scrub(value: Any, redact: Callable[[str], str]) -> Any:
    """`value` (an event, or any part of one) with every string redacted and SQL statement
    parameters removed."""
    if isinstance(value, str):
        return _SQL_PARAMETERS.sub("[parameters: not sent]", redact(value))
    if isinstance(value, dict):
        return {key: scrub(item, redact) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item, redact) for item in value]
    return value


def _before_send(event: Any, _hint: Any) -> Any:
    return scrub(event, _redact)
