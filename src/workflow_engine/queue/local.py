"""In-process job queue for the embedded mode: the JobQueue contract on asyncio.

Jobs live in memory only; the database is the system of record, and on start the reconciler
queues again whatever the database says is unfinished.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import deque
from typing import Any

from workflow_engine.domain.priority import DEFAULT_PRIORITY
from workflow_engine.errors import Delay
from workflow_engine.queue.base import Handler, Job, JobQueue, QueueOptions, backoff_ms

log = logging.getLogger(__name__)


class LocalQueue(JobQueue):
    def __init__(self, name: str, options: QueueOptions) -> None:
        super().__init__(name, options)
        # A heap: the highest priority first, then the order of arrival (a hand-back first).
        self._waiting: list[tuple[int, int, Job]] = []
        self._delayed: list[tuple[float, int, Job]] = []
        self._held: set[str] = set()
        self._active: dict[str, asyncio.Task[None]] = {}
        self._completed = 0
        self._failed = 0
        self._seq = 0
        self._idle: deque[asyncio.Future[None]] = deque()
        """Consumers waiting for a job: a new job wakes one of them, not all."""
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def add(
        self,
        job_id: str,
        data: dict[str, Any] | None = None,
        *,
        delay_ms: int = 0,
        priority: int = DEFAULT_PRIORITY,
    ) -> None:
        if job_id in self._held:
            return
        self._held.add(job_id)
        job = Job(id=job_id, queue=self.name, data=dict(data or {}), priority=priority)
        self._enqueue(job, delay_ms)

    def _enqueue(self, job: Job, delay_ms: int) -> None:
        self._seq += 1
        if delay_ms > 0:
            heapq.heappush(self._delayed, (time.monotonic() + delay_ms / 1000, self._seq, job))
        else:
            self._wait(job, self._seq)
        self._wake(1)

    def _wake(self, count: int | None = None) -> None:
        """Wake `count` idle consumers (None: all of them)."""
        while self._idle and (count is None or count > 0):
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if count is not None:
                    count -= 1

    def _wait(self, job: Job, order: int) -> None:
        heapq.heappush(self._waiting, (-job.priority, order, job))

    async def counts(self) -> dict[str, int]:
        return {
            "waiting": len(self._waiting),
            "active": len(self._active),
            "delayed": len(self._delayed),
            "completed": self._completed,
            "failed": self._failed,
        }

    async def start_worker(self, handler: Handler, *, concurrency: int) -> None:
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._consume(handler), name=f"{self.name}-worker-{n}")
            for n in range(concurrency)
        ]

    def _promote_due(self) -> float | None:
        """Move due delayed jobs to waiting; return seconds until the next one, if any."""
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, order, job = heapq.heappop(self._delayed)
            self._wait(job, order)
        return self._delayed[0][0] - now if self._delayed else None

    async def _next_job(self) -> Job | None:
        while not self._stopping:
            wait = self._promote_due()
            if self._waiting:
                job = heapq.heappop(self._waiting)[2]
                if self._waiting or self._delayed:
                    # Another consumer takes the next job, or watches for the next delayed one
                    # (this one may have been the one watching).
                    self._wake(1)
                return job
            waiter = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)
            try:
                async with asyncio.timeout(wait):
                    await waiter
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake(1)  # woken for a job it will not take: pass it on
                raise
            finally:
                if not waiter.done() or waiter.cancelled():  # not woken: a timeout, a cancel
                    waiter.cancel()
                    with contextlib.suppress(ValueError):
                        self._idle.remove(waiter)
        return None

    async def _consume(self, handler: Handler) -> None:
        while (job := await self._next_job()) is not None:
            task = asyncio.create_task(handler(job))
            self._active[job.id] = task
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                # Stopped with the job unfinished: hand it back (once its handler has stopped).
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                self._active.pop(job.id, None)
                # First among its priority; a distinct order each, so no two entries tie.
                self._seq += 1
                self._wait(job, -self._seq)
                raise
            except Delay as delay:
                self._active.pop(job.id, None)
                self._enqueue(job, delay.delay_ms)
                continue
            except Exception as exc:
                self._active.pop(job.id, None)
                if job.attempt < self.options.attempts:
                    wait = backoff_ms(self.options, job.attempt)
                    log.warning(
                        "job %s on %s failed (%s); retry in %d ms", job.id, self.name, exc, wait
                    )
                    retry = Job(
                        id=job.id,
                        queue=job.queue,
                        data=job.data,
                        attempt=job.attempt + 1,
                        priority=job.priority,
                    )
                    self._enqueue(retry, wait)
                else:
                    # A warning: the handler logs the error itself, with its traceback
                    # (engine/workers.py), and error tracking counts that one.
                    log.warning(
                        "job %s on %s failed after %d attempts: %s",
                        job.id,
                        self.name,
                        job.attempt,
                        exc,
                    )
                    self._failed += 1
                    self._held.discard(job.id)
                continue
            self._active.pop(job.id, None)
            self._completed += 1
            self._held.discard(job.id)

    async def stop_worker(self, *, grace_s: float) -> None:
        self._stopping = True
        self._wake()
        running = list(self._active.values())
        if running:
            await asyncio.wait(running, timeout=grace_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def close(self) -> None:
        self._stopping = True
        self._wake()
