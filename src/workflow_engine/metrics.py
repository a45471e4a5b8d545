"""Prometheus metrics: the registry, every metric the engine keeps, and the small functions the
engine calls where things happen (one line at each place). `serve` answers `GET /metrics` from
this registry; each `workflow-engine workers` process serves it on METRICS_PORT.

Labels are bounded: workflow NAMES, step types, statuses, queue names; never an execution id.
The metrics are per process: in the embedded mode `serve` runs the executions, so its /metrics
counts them; in the distributed mode each workers process counts its own (Prometheus sums them).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from workflow_engine.errors import StepTimeout
from workflow_engine.queue.base import JobQueue

__all__ = ["CONTENT_TYPE_LATEST", "REGISTRY", "render", "start_server"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# No `*_created` series beside every counter and histogram (noise for Prometheus).
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()
"""Ours alone (not prometheus_client's global one): what a scrape shows is exactly this list."""
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes...

_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
_STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

EXECUTIONS_FINISHED = Counter(
    "workflow_engine_executions_finished",
    "Executions this process ran to a final status, by workflow name and status",
    ["workflow", "status"],
    registry=REGISTRY,
)
EXECUTION_DURATION = Histogram(
    "workflow_engine_execution_duration_seconds",
    "From an execution's first start to its final status, by workflow name",
    ["workflow"],
    buckets=_DURATION_BUCKETS,
    registry=REGISTRY,
)
STEP_ATTEMPT_DURATION = Histogram(
    "workflow_engine_step_attempt_duration_seconds",
    "One try of a step (its run, after rendering), by step type and outcome "
    "(completed, failed, timeout, stopped)",
    ["step_type", "outcome"],
    buckets=_STEP_BUCKETS,
    registry=REGISTRY,
)
QUEUE_JOBS = Gauge(
    "workflow_engine_queue_jobs",
    "Jobs in a queue by state, read when scraped (absent when the queue did not answer in time)",
    ["queue", "state"],
    registry=REGISTRY,
)
LEASES_LOST = Counter(
    "workflow_engine_leases_lost",
    "Executions this process stopped running because another worker took over its lease",
    registry=REGISTRY,
)
RECONCILER_REQUEUED = Counter(
    "workflow_engine_reconciler_requeued",
    "Executions the reconciler queued again, by reason (pending: dispatch job re-sent; "
    "expired: a running execution's lease ran out)",
    ["reason"],
    registry=REGISTRY,
)
HTTP_STEP_RESPONSES = Counter(
    "workflow_engine_http_step_responses",
    "Responses http steps received (each redirect hop counts), by status class; "
    "`error`: no response (connection failure, timeout, blocked destination, stopped)",
    ["status_class"],
    registry=REGISTRY,
)

# Known label values start at 0, so a rate over them is defined before the first event.
for _reason in ("pending", "expired"):
    RECONCILER_REQUEUED.labels(_reason)
for _class in ("2xx", "3xx", "4xx", "5xx", "error"):
    HTTP_STEP_RESPONSES.labels(_class)

QUEUE_TIMEOUT_S = 1.0
"""How long a scrape waits for the queues' counts (Redis may be slow or down)."""


# --- hooks the engine calls ---------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _labelled(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, looked up once: the engine calls these for every step, and
    prometheus_client's `labels` takes a lock and checks its arguments each time."""
    return metric.labels(*values)


def execution_finished(workflow: str, status: str, started_at: datetime) -> None:
    """An execution reached its final status (written): count it and observe its duration."""
    _labelled(EXECUTIONS_FINISHED, workflow, status).inc()
    seconds = (datetime.now(UTC) - started_at).total_seconds()
    _labelled(EXECUTION_DURATION, workflow).observe(max(seconds, 0.0))


async def timed_step(step_type: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run one step attempt (`attempt()`, called here so that an attempt stopped before it began
    leaves no coroutine un-awaited), observing its duration by step type and outcome."""
    started = time.perf_counter()
    outcome = "failed"
    try:
        result = await attempt()
        outcome = "completed"
        return result
    except asyncio.CancelledError:
        outcome = "stopped"
        raise
    except StepTimeout:
        outcome = "timeout"
        raise
    finally:
        _labelled(STEP_ATTEMPT_DURATION, step_type, outcome).observe(time.perf_counter() - started)


def lease_lost() -> None:
    LEASES_LOST.inc()


def requeued(*, pending: int, expired: int) -> None:
    """A reconciler pass queued these again."""
    if pending:
        RECONCILER_REQUEUED.labels("pending").inc(pending)
    if expired:
        RECONCILER_REQUEUED.labels("expired").inc(expired)


class _Response(Protocol):
    @property
    def status_code(self) -> int: ...


R = TypeVar("R", bound=_Response)


async def http_response(sending: Awaitable[R]) -> R:
    """Await an http step's request, counting the response by status class (or `error`)."""
    try:
        response = await sending
    except BaseException:
        _labelled(HTTP_STEP_RESPONSES, "error").inc()
        raise
    _labelled(HTTP_STEP_RESPONSES, status_class(response.status_code)).inc()
    return response


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "error"


# --- exposition ---------------------------------------------------------------------------------


async def refresh_queue_jobs(
    queues: Sequence[JobQueue], timeout_s: float = QUEUE_TIMEOUT_S
) -> None:
    """Set the queue gauge from each queue's `counts()`; a queue that does not answer within
    `timeout_s` has no samples in this scrape (rather than stale ones)."""

    async def one(queue: JobQueue) -> dict[str, int] | None:
        try:
            async with asyncio.timeout(timeout_s):
                return await queue.counts()
        except Exception as exc:
            log.warning("metrics: queue %s did not give its counts: %r", queue.name, exc)
            return None

    found = await asyncio.gather(*(one(queue) for queue in queues))
    QUEUE_JOBS.clear()
    for queue, counts in zip(queues, found, strict=True):
        for state, count in (counts or {}).items():
            QUEUE_JOBS.labels(queue.name, state).set(count)


async def render(queues: Sequence[JobQueue]) -> bytes:
    """The Prometheus text exposition of the registry, queue depths read now."""
    await refresh_queue_jobs(queues)
    return generate_latest(REGISTRY)


class MetricsServer:
    """A tiny HTTP/1.1 server for a workers process: `GET /metrics` (and `/`), nothing else.
    On the process's own event loop, so reading the queues' counts needs no thread hand-off."""

    def __init__(self, queues: Sequence[JobQueue]) -> None:
        self.queues = list(queues)
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._handle, host, port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = await reader.readuntil(b"\r\n\r\n")
                method, _, rest = request.decode("latin-1").partition(" ")
                path = rest.partition(" ")[0].partition("?")[0]
                if method != "GET":
                    await _reply(writer, 405, b"method not allowed\n", "text/plain")
                elif path not in ("/metrics", "/"):
                    await _reply(writer, 404, b"not found: GET /metrics\n", "text/plain")
                else:
                    body = await render(self.queues)
                    await _reply(writer, 200, body, CONTENT_TYPE_LATEST)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that went away or sent nonsense: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _reply(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str) -> None:
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + body)
    await writer.drain()


async def start_server(host: str, port: int, queues: Sequence[JobQueue]) -> MetricsServer | None:
    """Serve the metrics on host:port; None when `port` is 0 (disabled) or taken (another
    workers process on this machine has it: a warning, not a reason to stop working)."""
    if not port:
        return None
    server = MetricsServer(queues)
    try:
        await server.start(host, port)
    except OSError as exc:
        log.warning("metrics: cannot listen on %s:%d (%s); no metrics endpoint", host, port, exc)
        return None
    return server
