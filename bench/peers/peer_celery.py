"""Peer (b): Celery 5 on the same Redis, a chain of 1 and of 10 no-op tasks (`noop.si()`), result
backend Redis (every task's result is stored, as our engine stores every step). Worker: one
`celery worker` process, prefork pool, concurrency 2 (the machine's cores). One batch = send N
chains, wait for the last task of each; throughput = chains / s, end to end."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import batch_size, emit, parser


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--pool-concurrency", type=int, default=2)
    args = p.parse_args()
    os.environ["WFBENCH_REDIS_URL"] = args.redis_url
    from celery import chain
    from celery.result import ResultSet
    from celery_app import app, noop

    here = Path(__file__).parent
    log_path = Path(tempfile.gettempdir()) / f"wfbench-celery-{os.getpid()}.log"
    log = log_path.open("wb")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_app",
            "worker",
            "--pool=prefork",
            f"--concurrency={args.pool_concurrency}",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-Q",
            "wfbench-celery",
        ],
        cwd=here,
        env={**os.environ, "PYTHONPATH": str(here)},
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def make(steps: int) -> Any:
        return chain(*(noop.si() for _ in range(steps))) if steps > 1 else noop.si()

    def batch(steps: int, n: int) -> dict[str, Any]:
        start = time.perf_counter()
        results = [make(steps).apply_async() for _ in range(n)]
        timed_out = False
        try:
            values = ResultSet(results).join_native(timeout=args.deadline_s, propagate=False)
        except Exception:  # celery's TimeoutError
            timed_out = True
            values = [r.result if r.ready() else None for r in results]
        seconds = time.perf_counter() - start
        completed = sum(1 for v in values if v is True)
        for r in results:
            r.forget()
        return {
            "n": n,
            "completed": completed,
            "seconds": seconds,
            "rate": completed / seconds,
            "timed_out": timed_out,
        }

    try:
        # Ready when a ping round-trips.
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"celery worker did not start; see {log_path}")
        noop.delay().get(timeout=30)
        throughput: dict[str, list[dict[str, Any]]] = {}
        sequential: dict[str, list[float]] = {}
        for steps in (1, 10):
            warm = batch(steps, args.warmup)
            n = batch_size(warm["rate"], args)
            throughput[str(steps)] = [batch(steps, n) for _ in range(args.repeats)]
            samples = []
            for _ in range(args.sequential):
                t0 = time.perf_counter()
                result = make(steps).apply_async()
                result.get(timeout=30)
                samples.append((time.perf_counter() - t0) * 1000)
                result.forget()
            sequential[str(steps)] = samples
        emit(
            {
                "peer": "celery",
                "version": importlib.metadata.version("celery"),
                "pool": f"prefork x{args.pool_concurrency}",
                "throughput": throughput,
                "sequential_ms": sequential,
            }
        )
    finally:
        try:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        log.close()
        log_path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
