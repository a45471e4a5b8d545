"""Tracing (OpenTelemetry, OTLP over HTTP/protobuf): a trace per execution, a span per step try.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set: `setup` is then never called, nothing of
OpenTelemetry is imported, and each hook below is one call that returns at once (a step try costs
`step_attempt()` returning the shared `NO_SPAN`, whose `end()` does nothing).

One trace per execution, however many processes run it. The trace id IS the execution id (a UUID
is 128 bits, like a trace id), and the execution's root span has an id derived from it
(`root_span_id`). So every delivery of an execution (the first one, one after a crash or a
hand-back, a worker that took over an expired lease) makes each step try a child of that root
without reading or storing anything; the root span itself is exported once, by whoever writes the
final status, and spans from the execution's first start to its end. Find an execution's trace by
its id: the 32 hex digits without the dashes.

The http step sends `traceparent` with its try's span (`StepSpan.traceparent`, handed to the step
as `StepContext.traceparent`), so the called service's spans join the execution's trace.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING, Protocol

from workflow_engine.telemetry.execution_end import ExecutionEnd

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from workflow_engine.telemetry.otel import Tracing

__all__ = [
    "NO_SPAN",
    "StepSpan",
    "enabled",
    "execution_finished",
    "root_span_id",
    "setup",
    "shutdown",
    "step_attempt",
    "trace_id",
    "traceparent",
    "traces_url",
]


class StepSpan(Protocol):
    """The span of one step try."""

    @property
    def traceparent(self) -> str | None:
        """The W3C `traceparent` of this span; None while tracing is off."""

    def end(self, status: str, error: str | None = None, *, retrying: bool = False) -> None:
        """The try ended: `completed`, `failed` (with its error; `retrying`: another try
        follows) or `stopped` (cancelled, halted, handed back, lease lost)."""


class _NoSpan:
    traceparent: str | None = None

    def end(self, status: str, error: str | None = None, *, retrying: bool = False) -> None:
        pass


NO_SPAN: StepSpan = _NoSpan()
_tracing: Tracing | None = None


def setup(
    endpoint: str, *, service_name: str, process: str, exporter: SpanExporter | None = None
) -> None:
    """Start exporting spans (batched) to the OTLP/HTTP collector at `endpoint` (its base URL,
    as OTEL_EXPORTER_OTLP_ENDPOINT), or to `exporter`. Call once, at process start."""
    global _tracing
    from workflow_engine.telemetry.otel import Tracing

    shutdown()
    _tracing = Tracing(
        traces_url(endpoint), service_name=service_name, process=process, exporter=exporter
    )


def shutdown() -> None:
    """Export what is still batched (bounded), then stop tracing."""
    global _tracing
    tracing, _tracing = _tracing, None
    if tracing is not None:
        tracing.shutdown()


def enabled() -> bool:
    return _tracing is not None


def step_attempt(
    execution_id: str, step_key: str, step_id: str, step_type: str, attempt: int
) -> StepSpan:
    """Start the span of one try of a step (a child of the execution's root span)."""
    if _tracing is None:
        return NO_SPAN
    return _tracing.step_attempt(execution_id, step_key, step_id, step_type, attempt)


def execution_finished(end: ExecutionEnd) -> None:
    """Export the execution's root span, from its first start to now."""
    if _tracing is not None:
        _tracing.execution_finished(end)


# --- ids (pure) ----------------------------------------------------------------------------------


def trace_id(execution_id: str) -> int:
    """The execution's trace id: its UUID's 128 bits (a hash of the id if it is not a UUID)."""
    try:
        value = uuid.UUID(execution_id).int
    except ValueError:
        digest = hashlib.blake2b(execution_id.encode(), digest_size=16).digest()
        value = int.from_bytes(digest, "big")
    return value or 1


def root_span_id(execution_id: str) -> int:
    """The id of the execution's root span: 64 bits of a hash of the execution id, so every
    process running a step of it names the same parent."""
    digest = hashlib.blake2b(execution_id.encode(), digest_size=8, person=b"execution").digest()
    return int.from_bytes(digest, "big") or 1


def traceparent(trace: int, span: int, *, sampled: bool = True) -> str:
    """A W3C Trace Context `traceparent` header value (version 00)."""
    return f"00-{trace:032x}-{span:016x}-{'01' if sampled else '00'}"


def traces_url(endpoint: str) -> str:
    """The traces URL for an OTLP/HTTP base URL (as the OTEL_EXPORTER_OTLP_ENDPOINT variable:
    `v1/traces` appended)."""
    return endpoint if endpoint.endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
