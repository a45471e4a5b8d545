"""The JobQueue contract on BullMQ (Redis), for the distributed mode.

Queue names and the `bull` prefix match the seed, so Bull Board works and `redis-cli LLEN
bull:workflow-dispatch:wait` counts the waiting jobs. Priorities (`priority_options`): a job of
the default priority goes to the tail of `wait`, a higher one to its head (taken next), a lower
one to BullMQ's `prioritized` set (taken once `wait` is empty).
Traps handled here (DESIGN.md section 13): a Queue and a Worker never share a client (each
gets the URL and builds its own); bullmq has no job timeout, so the handler runs under
`asyncio.timeout`; `Delay` becomes `moveToDelayed` + `DelayedError`, which costs no attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from bullmq import Queue as BullQueue
from bullmq import Worker as BullWorker
from bullmq.backends.redis_backend import RedisBackend
from bullmq.custom_errors import DelayedError

from workflow_engine.batching import Batcher
from workflow_engine.domain.priority import DEFAULT_PRIORITY
from workflow_engine.errors import Delay
from workflow_engine.private_hooks import Hook, check
from workflow_engine.queue.base import Handler, Job, JobQueue, QueueOptions

log = logging.getLogger(__name__)
PREFIX = "bull"
CLOSE_SLACK_S = 5.0
COUNT_STATES = ("waiting", "active", "delayed", "completed", "failed")


def check_hooks() -> None:
    """Raise ConfigurationError (naming bullmq's version and what changed) when the installed
    bullmq lacks what `_LeanWorker` overrides or relies on. Run when a BullMQQueue is made."""
    check(
        "bullmq",
        [
            # The run loop calls these two per slot: our overrides are reached through them.
            Hook(
                BullWorker,
                "run",
                uses=("self.getNextJob(token)", "self.processJob(job, job.token)"),
            ),
            Hook(BullWorker, "getNextJob", params=("self", "token")),
            # It completes a job through the worker's backend, where _FetchOnCompletion sits.
            Hook(
                BullWorker,
                "processJob",
                params=("self", "job", "token"),
                uses=("self.backend.moveToCompleted(",),
            ),
            Hook(
                BullWorker,
                "nextJobFromJobData",
                params=("self", "job_data", "job_id", "limit_until", "delay_until", "token"),
            ),
            Hook(BullWorker, "__init__", uses=("self.backend =", "self.closing =")),
            Hook(
                RedisBackend,
                "moveToCompleted",
                params=("self", "job", "return_value", "remove_on_complete", "token", "fetch_next"),
                uses=('"result": result',),
            ),
        ],
        used_by="queue/bullmq.py (_LeanWorker)",
    )


class _LeanWorker(BullWorker):  # type: ignore[misc]
    """bullmq's Worker with fewer Redis calls per job (bullmq is pinned exactly in pyproject.toml
    and `check_hooks` says at start-up when what we override has changed; `getNextJob` and
    `processJob` are the hooks its run loop calls).

    One fetch at a time: bullmq's run loop starts a fetch (a `moveToActive` script) for every
    free slot at once. When the queue holds fewer jobs than there are free slots, all but one
    find nothing: with 50 slots and a trickle of jobs, about 50 scripts per job, which took a
    large share of the workers' and Redis's CPU and delayed the jobs behind them. Here a fetch
    that finds a job lets the next go at once; once the queue is drained, the next one blocks on
    Redis (bullmq's own wait for a new job) and the rest wait for it here.

    Fetch on completion: completing a job also moves the next waiting one to active in the same
    script (bullmq's `fetchNext`, which its Python worker leaves off), and the slot goes on with
    it: one script per job instead of two while there is work queued.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fetching = asyncio.Lock()
        self._fetched: dict[str, Any] = {}
        self.backend = _FetchOnCompletion(self.backend, self)  # type: ignore[has-type]

    async def getNextJob(self, token: str) -> Any:
        async with self._fetching:
            if self.closing:
                return None
            return await super().getNextJob(token)

    async def processJob(self, job: Any, token: str) -> Any:
        await super().processJob(job, token)
        fetched = self._fetched.pop(token, None)
        if fetched is None:
            return None
        # Also when nothing came back: that marks the queue drained, as bullmq's own fetch does.
        job_data, job_id, limit_until, delay_until = fetched
        # bullmq's parse of an empty answer (nothing left to fetch) gives None for both times,
        # which its nextJobFromJobData cannot compare: none means 0 there.
        following = await self.nextJobFromJobData(
            job_data, job_id, limit_until or 0, delay_until or 0, token
        )
        if following is not None and self.closing:
            # Fetched while the worker began closing, whose loop may be gone: give it back now
            # (no attempt spent) rather than leave it active with nobody running it.
            with contextlib.suppress(Exception):
                await following.moveToDelayed(round(time.time() * 1000), token)
            return None
        return following


class _FetchOnCompletion:
    """bullmq's backend as the worker sees it, with `moveToCompleted` fetching the next job."""

    def __init__(self, backend: Any, worker: _LeanWorker) -> None:
        self._backend = backend
        self._worker = worker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    async def moveToCompleted(
        self,
        job: Any,
        return_value: Any,
        remove_on_complete: Any,
        token: str,
        fetch_next: bool = False,  # bullmq's processJob always says False: fetched regardless
    ) -> Any:
        fetch = not self._worker.closing
        moved = await self._backend.moveToCompleted(
            job, return_value, remove_on_complete, token, fetch_next=fetch
        )
        if fetch:
            self._worker._fetched[token] = moved["result"]
        return moved


PRIORITY_KEY = "_priority"
"""Where a job's priority travels in its data when it is not the default (BullMQ keeps none for
the jobs at the head of `wait`)."""


def priority_options(priority: int) -> dict[str, Any]:
    """BullMQ options for one of our priorities (10 first). BullMQ takes every job of `wait`
    before any of its `prioritized` set, so the default priority stays in `wait` (the seed's
    `LLEN ...:wait` holds), a higher one is pushed at the head of `wait` (the newest of them
    first), and a lower one goes to `prioritized` (4 before 1, each in the order they came)."""
    if priority > DEFAULT_PRIORITY:
        return {"lifo": True}
    if priority < DEFAULT_PRIORITY:
        return {"priority": DEFAULT_PRIORITY - priority}
    return {}


class BullMQQueue(JobQueue):
    def __init__(
        self,
        name: str,
        options: QueueOptions,
        *,
        redis_url: str,
        job_timeout_ms: int,
        lock_ms: int = 30_000,
    ) -> None:
        check_hooks()  # before anything connects: a bullmq upgrade that broke them stops here
        super().__init__(name, options)
        self.redis_url = redis_url
        self.job_timeout_ms = job_timeout_ms
        self.lock_ms = lock_ms
        self._queue = BullQueue(name, {"connection": redis_url, "prefix": PREFIX})
        self._worker: _LeanWorker | None = None
        self._running: dict[str, asyncio.Future[None]] = {}
        self._handing_back = False
        # Concurrent adds go to Redis together: one pipelined MULTI instead of a round trip each.
        self._adds = Batcher(self._add_many, name=f"add to {name}")

    def _job_options(self, job_id: str, delay_ms: int, priority: int) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "jobId": job_id,
            **priority_options(priority),
            "attempts": self.options.attempts,
            "removeOnComplete": True,
            "removeOnFail": True,
        }
        if self.options.backoff_ms:
            opts["backoff"] = {"type": "exponential", "delay": self.options.backoff_ms}
        if delay_ms > 0:
            opts["delay"] = delay_ms
        return opts

    async def add(
        self,
        job_id: str,
        data: dict[str, Any] | None = None,
        *,
        delay_ms: int = 0,
        priority: int = DEFAULT_PRIORITY,
    ) -> None:
        # BullMQ itself ignores a second add of a held id (its script checks the job's key).
        body = dict(data or {})
        if priority != DEFAULT_PRIORITY:
            body[PRIORITY_KEY] = priority
        await self._adds((job_id, body, delay_ms, priority))

    async def _add_many(self, jobs: list[tuple[str, dict[str, Any], int, int]]) -> list[None]:
        if len(jobs) == 1:
            # A pipeline first asks Redis whether its scripts are loaded (SCRIPT EXISTS): one
            # round trip more than a lone add.
            ((job_id, data, delay_ms, priority),) = jobs
            await self._queue.add(self.name, data, self._job_options(job_id, delay_ms, priority))
            return [None]
        await self._queue.addBulk(
            [
                {
                    "name": self.name,
                    "data": data,
                    "opts": self._job_options(job_id, delay_ms, priority),
                }
                for job_id, data, delay_ms, priority in jobs
            ]
        )
        return [None] * len(jobs)

    async def counts(self) -> dict[str, int]:
        counts = await self._queue.getJobCounts(*COUNT_STATES, "prioritized")
        found = {state: int(counts.get(state, 0)) for state in COUNT_STATES}
        # Jobs of a lower priority than the default wait in BullMQ's `prioritized` set.
        found["waiting"] += int(counts.get("prioritized", 0))
        return found

    async def start_worker(self, handler: Handler, *, concurrency: int) -> None:
        timeout_s = self.job_timeout_ms / 1000

        async def process(bull_job: Any, token: str) -> None:
            data = dict(bull_job.data or {})
            job = Job(
                id=str(bull_job.id),
                queue=self.name,
                data=data,
                attempt=int(bull_job.attemptsMade) + 1,
                priority=int(data.pop(PRIORITY_KEY, DEFAULT_PRIORITY)),
            )
            task = asyncio.ensure_future(handler(job))
            self._running[job.id] = task
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(task)
            except Delay as delay:
                await bull_job.moveToDelayed(round(time.time() * 1000) + delay.delay_ms, token)
                raise DelayedError() from None
            except asyncio.CancelledError:
                if not self._handing_back:
                    raise
                # Stopped with the job unfinished: give it back without spending an attempt.
                await bull_job.moveToDelayed(round(time.time() * 1000), token)
                raise DelayedError() from None
            except TimeoutError:
                task.cancel()
                raise
            finally:
                self._running.pop(job.id, None)

        self._worker = _LeanWorker(
            self.name,
            process,
            {
                "connection": self.redis_url,
                "prefix": PREFIX,
                "concurrency": concurrency,
                "lockDuration": self.lock_ms,
                "stalledInterval": self.lock_ms,
                "maxStalledCount": 1,
                "removeOnComplete": True,
                "removeOnFail": True,
                "drainDelay": 5,
                # After a Redis error, ask again in 1 s (bullmq waits 15 s, and so does close()).
                "runRetryDelay": 1000,
            },
        )

    async def stop_worker(self, *, grace_s: float) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        closing = asyncio.ensure_future(worker.close())
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=grace_s)
        # What is still running is cut off and handed back to the queue.
        self._handing_back = True
        for task in list(self._running.values()):
            task.cancel()
        try:
            # Bounded even when Redis is down and bullmq keeps retrying its connection.
            await asyncio.wait_for(asyncio.shield(closing), timeout=grace_s + CLOSE_SLACK_S)
        except TimeoutError:
            log.warning("queue %s did not close in time; forcing it", self.name)
            closing.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker.close(force=True), timeout=CLOSE_SLACK_S)
        self._handing_back = False

    async def close(self) -> None:
        await self._queue.close()

    @property
    def bull_queue(self) -> BullQueue:
        """The producer-side bullmq Queue (job schedulers are managed through it)."""
        return self._queue
