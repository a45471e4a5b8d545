"""The OpenTelemetry side of `tracing.py`, imported only once tracing is set up."""

from __future__ import annotations

from contextvars import ContextVar

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from workflow_engine.telemetry.execution_end import ExecutionEnd
from workflow_engine.telemetry.tracing import root_span_id, trace_id, traceparent

SHUTDOWN_FLUSH_MS = 5_000
"""At most this long at exit to export what is still batched (the collector may be down)."""

_forced_ids: ContextVar[tuple[int, int] | None] = ContextVar("forced_ids", default=None)


class _ExecutionIds(RandomIdGenerator):
    """Random ids, except while an execution's root span is made: then the ids derived from
    the execution id (see tracing.py). The SDK takes ids only from its id generator."""

    def generate_trace_id(self) -> int:
        forced = _forced_ids.get()
        return forced[0] if forced is not None else super().generate_trace_id()

    def generate_span_id(self) -> int:
        forced = _forced_ids.get()
        return forced[1] if forced is not None else super().generate_span_id()


class StepSpan:
    __slots__ = ("span", "traceparent")

    def __init__(self, span: Span) -> None:
        self.span = span
        context = span.get_span_context()
        self.traceparent: str | None = traceparent(
            context.trace_id, context.span_id, sampled=context.trace_flags.sampled
        )

    def end(self, status: str, error: str | None = None, *, retrying: bool = False) -> None:
        span = self.span
        span.set_attribute("step.status", status)
        if error is not None:
            span.set_attribute("step.error", error)
            span.set_status(Status(StatusCode.ERROR, error))
        if retrying:
            span.set_attribute("step.retrying", True)
        span.end()


class Tracing:
    def __init__(
        self,
        traces_url: str,
        *,
        service_name: str,
        process: str,
        exporter: SpanExporter | None = None,
    ) -> None:
        # Not registered as the global provider: the engine's spans are made here alone.
        self.provider = TracerProvider(
            resource=Resource.create(
                {"service.name": service_name, "workflow_engine.process": process}
            ),
            id_generator=_ExecutionIds(),
            shutdown_on_exit=False,  # `shutdown` is called by the process, bounded
        )
        self.provider.add_span_processor(
            BatchSpanProcessor(exporter or OTLPSpanExporter(endpoint=traces_url))
        )
        self.tracer = self.provider.get_tracer("workflow_engine")
        self.sampler = self.provider.sampler

    def _root_context(self, execution_id: str) -> Context:
        """The execution's root span as the parent of what its steps make here."""
        trace = trace_id(execution_id)
        flags = TraceFlags.SAMPLED if self._sampled(trace) else TraceFlags.DEFAULT
        root = SpanContext(
            trace, root_span_id(execution_id), is_remote=True, trace_flags=TraceFlags(flags)
        )
        return set_span_in_context(NonRecordingSpan(root))

    def _sampled(self, trace: int) -> bool:
        """What the sampler decides (or will) for the execution's root span: a ratio sampler
        decides by the trace id, so every process decides alike."""
        result = self.sampler.should_sample(Context(), trace, "execution")
        return result.decision is Decision.RECORD_AND_SAMPLE

    def step_attempt(
        self, execution_id: str, step_key: str, step_id: str, step_type: str, attempt: int
    ) -> StepSpan:
        span = self.tracer.start_span(
            f"step {step_key}",
            context=self._root_context(execution_id),
            kind=SpanKind.INTERNAL,
            attributes={
                "execution.id": execution_id,
                "step.key": step_key,
                "step.id": step_id,
                "step.type": step_type,
                "step.attempt": attempt,
            },
        )
        return StepSpan(span)

    def execution_finished(self, end: ExecutionEnd) -> None:
        attributes: dict[str, str | int] = {
            "workflow.id": end.workflow_id,
            "workflow.name": end.workflow_name,
            "execution.id": end.execution_id,
            "execution.status": end.status,
            "execution.retries": end.retries,
        }
        if end.version is not None:
            attributes["workflow.version"] = end.version
        if end.failed_step is not None:
            attributes["execution.failed_step"] = end.failed_step
        if end.error is not None:
            attributes["execution.error"] = end.error
        token = _forced_ids.set((trace_id(end.execution_id), root_span_id(end.execution_id)))
        try:
            span = self.tracer.start_span(
                f"execution {end.workflow_name}",
                context=Context(),  # a root: no parent, whatever is current
                kind=SpanKind.INTERNAL,
                attributes=attributes,
                start_time=int(end.started_at.timestamp() * 1_000_000_000),
            )
        finally:
            _forced_ids.reset(token)
        if end.status == "failed":
            span.set_status(Status(StatusCode.ERROR, end.error))
        span.end()

    def shutdown(self) -> None:
        # A collector that does not answer must not hold the process past its grace period:
        # after a flush that timed out, the exporting thread (a daemon) is left to the exit.
        if self.provider.force_flush(SHUTDOWN_FLUSH_MS):
            self.provider.shutdown()
