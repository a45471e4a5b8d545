"""Peer (a): raw bullmq (Python), no-op jobs, one Worker with concurrency 50: the transport's
ceiling. One batch = add N jobs (addBulk, 500 a call) and wait until the worker has run all N."""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
import uuid
from typing import Any

from bullmq import Queue, Worker
from common import batch_size, emit, parser

PREFIX = "wfbench-bullmq"


async def main() -> None:
    args = parser(__doc__ or "").parse_args()
    name = f"noop-{uuid.uuid4().hex[:8]}"
    conn = {"connection": args.redis_url, "prefix": PREFIX}
    queue = Queue(name, conn)
    done = 0
    target = 0
    finished = asyncio.Event()

    async def process(job: Any, token: str) -> None:
        nonlocal done
        done += 1
        if done >= target:
            finished.set()

    worker = Worker(name, process, {**conn, "concurrency": args.concurrency})
    opts = {"removeOnComplete": True, "removeOnFail": True}

    async def batch(n: int) -> dict[str, Any]:
        nonlocal done, target
        done, target = 0, n
        finished.clear()
        start = time.perf_counter()
        for first in range(0, n, 500):
            await queue.addBulk(
                [{"name": "noop", "data": {}, "opts": opts} for _ in range(min(500, n - first))]
            )
        try:
            await asyncio.wait_for(finished.wait(), timeout=args.deadline_s)
            timed_out = False
        except TimeoutError:
            timed_out = True
        seconds = time.perf_counter() - start
        return {
            "n": n,
            "completed": done,
            "seconds": seconds,
            "rate": done / seconds,
            "timed_out": timed_out,
        }

    try:
        warm = await batch(args.warmup)
        n = batch_size(warm["rate"], args)
        runs = [await batch(n) for _ in range(args.repeats)]
        counts = await queue.getJobCounts("waiting", "active", "completed", "failed")
        emit(
            {
                "peer": "bullmq",
                "version": importlib.metadata.version("bullmq"),
                "concurrency": args.concurrency,
                "runs": runs,
                "left_in_queue": counts,
            }
        )
    finally:
        await worker.close()
        await queue.obliterate(force=True)
        await queue.close()


if __name__ == "__main__":
    asyncio.run(main())
