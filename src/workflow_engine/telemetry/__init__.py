"""Error tracking (`SENTRY_DSN`, sentry.py) and tracing (`OTEL_EXPORTER_OTLP_ENDPOINT`,
tracing.py): set up once when `serve` and `workers` start, flushed when they stop. Each is off
while its setting is empty: its library is not even imported, and the hooks return at once.

The engine calls `execution_finished` where an execution gets its final status, and
`tracing.step_attempt` for each step try.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workflow_engine.telemetry import sentry, tracing
from workflow_engine.telemetry.execution_end import ExecutionEnd

if TYPE_CHECKING:
    from workflow_engine.settings import Settings

__all__ = ["ExecutionEnd", "execution_finished", "setup", "shutdown"]


def setup(settings: Settings, *, process: str) -> None:
    """Turn on what the settings ask for; `process` is `serve` or `workers`."""
    if settings.sentry_dsn:
        from importlib.metadata import version

        from workflow_engine.engine.secrets import Secrets

        secrets = Secrets.from_environ(settings.secrets_prefix)
        sentry.setup(
            settings.sentry_dsn,
            environment=settings.sentry_environment,
            traces_sample_rate=settings.sentry_traces_sample_rate,
            process=process,
            release=f"workflow-engine@{version('workflow-engine')}",
            redact=secrets.redact,
        )
    if settings.otel_exporter_otlp_endpoint:
        tracing.setup(
            settings.otel_exporter_otlp_endpoint,
            service_name=settings.otel_service_name,
            process=process,
        )


def shutdown() -> None:
    """Send what is still queued (each bounded to a few seconds)."""
    tracing.shutdown()
    sentry.shutdown()


def execution_finished(end: ExecutionEnd) -> None:
    """An execution reached its final status (written): its root span; an event if it failed."""
    tracing.execution_finished(end)
    if end.status == "failed":
        trace = f"{tracing.trace_id(end.execution_id):032x}" if tracing.enabled() else None
        sentry.execution_failed(end, trace_id=trace)
