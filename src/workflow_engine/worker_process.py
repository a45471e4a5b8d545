"""`workflow-engine workers`: a process of dispatch and execution workers (distributed mode)."""

from __future__ import annotations

import asyncio
import signal

from workflow_engine import bootstrap, gc_tuning, metrics
from workflow_engine.settings import Settings


async def run_workers(settings: Settings, *, concurrency: int | None = None) -> None:
    """Run until SIGTERM/SIGINT, then stop taking jobs and let running executions finish within
    SHUTDOWN_GRACE_MS; what cannot finish is handed back (its lease expires and another worker
    resumes it)."""
    engine = await bootstrap.build(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    queues = [engine.dispatch_queue, engine.execution_queue]
    server = await metrics.start_server(settings.host, settings.metrics_port, queues)
    if server is not None:
        print(
            f"[Workflow Engine] Metrics on http://{settings.host}:{settings.metrics_port}/metrics",
            flush=True,
        )
    try:
        await engine.start_workers(
            concurrency=concurrency, say=lambda line: print(line, flush=True)
        )
        gc_tuning.started()
        await stop.wait()
        print("[Workflow Engine] Shutting down: finishing running executions...", flush=True)
    finally:
        if server is not None:
            await server.close()
        await engine.stop()
    print("[Workflow Engine] Stopped", flush=True)
