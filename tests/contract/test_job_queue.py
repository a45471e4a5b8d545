"""The JobQueue contract: one suite, run on the in-process queue and on BullMQ (real Redis)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.support.services import REDIS_HOST, REDIS_PORT, REDIS_URL, require
from workflow_engine.errors import Delay
from workflow_engine.queue.base import Job, JobQueue, QueueOptions
from workflow_engine.queue.bullmq import BullMQQueue
from workflow_engine.queue.local import LocalQueue

pytestmark = pytest.mark.timeout(15)


@pytest.fixture(params=["local", "bullmq"])
async def queue(request: pytest.FixtureRequest) -> AsyncIterator[JobQueue]:
    options = QueueOptions(attempts=3, backoff_ms=50)
    q: JobQueue
    if request.param == "local":
        q = LocalQueue("test-queue", options)
    else:
        require("Redis", REDIS_HOST, REDIS_PORT)
        name = f"test-{uuid.uuid4().hex[:8]}"
        q = BullMQQueue(name, options, redis_url=REDIS_URL, job_timeout_ms=10_000, lock_ms=5_000)
    yield q
    await q.stop_worker(grace_s=0.5)
    if isinstance(q, BullMQQueue):
        await q.bull_queue.obliterate(force=True)
    await q.close()


async def test_a_held_job_id_is_not_added_twice(queue: JobQueue) -> None:
    await queue.add("job-1", {"n": 1})
    await queue.add("job-1", {"n": 2})
    assert (await queue.counts())["waiting"] == 1
    seen: list[Job] = []
    done = asyncio.Event()

    async def handler(job: Job) -> None:
        seen.append(job)
        done.set()

    await queue.start_worker(handler, concurrency=2)
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.sleep(0.2)
    assert [(job.id, job.data) for job in seen] == [("job-1", {"n": 1})]


async def test_higher_priority_jobs_are_taken_first(queue: JobQueue) -> None:
    # Added while no worker runs: a backlog. Within the default priority and below, the order
    # they came in.
    added = [("low-1", 1), ("mid-1", 5), ("high-1", 10), ("low-2", 1), ("high-2", 10)]
    for job_id, priority in added:
        await queue.add(job_id, {"p": priority}, priority=priority)
    await queue.add("plain")  # no priority said: 5
    seen: list[tuple[str, int]] = []
    done = asyncio.Event()

    async def handler(job: Job) -> None:
        seen.append((job.id, job.priority))
        if len(seen) == len(added) + 1:
            done.set()

    await queue.start_worker(handler, concurrency=1)
    await asyncio.wait_for(done.wait(), 5)
    order = [job_id for job_id, _ in seen]
    # Above the default, BullMQ takes the newest first (each is put at the head of `wait`):
    # only that the high ones come first holds on both queues.
    assert set(order[:2]) == {"high-1", "high-2"}
    assert order[2:] == ["mid-1", "plain", "low-1", "low-2"]
    assert dict(seen) == {**dict(added), "plain": 5}


async def test_a_delayed_job_keeps_its_priority(queue: JobQueue) -> None:
    seen: list[tuple[str, int]] = []
    done = asyncio.Event()

    async def handler(job: Job) -> None:
        seen.append((job.id, job.priority))
        if len(seen) == 1:
            raise Delay(10)  # back to the queue: it comes again with its priority
        done.set()

    await queue.start_worker(handler, concurrency=1)
    await queue.add("urgent", priority=9)
    await asyncio.wait_for(done.wait(), 5)
    assert seen == [("urgent", 9), ("urgent", 9)]


async def test_jobs_run_and_the_id_can_be_used_again_after(queue: JobQueue) -> None:
    seen: list[str] = []
    done = asyncio.Event()

    async def handler(job: Job) -> None:
        seen.append(job.id)
        done.set()

    await queue.start_worker(handler, concurrency=2)
    await queue.add("a")
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.sleep(0.01)
    await queue.add("a")
    await asyncio.sleep(0.1)
    assert seen == ["a", "a"]


async def test_failed_jobs_are_retried_with_backoff_then_dropped(queue: JobQueue) -> None:
    attempts: list[tuple[int, float]] = []
    loop = asyncio.get_running_loop()

    async def handler(job: Job) -> None:
        attempts.append((job.attempt, loop.time()))
        raise RuntimeError("boom")

    await queue.start_worker(handler, concurrency=1)
    await queue.add("x")
    async with asyncio.timeout(10):
        while len(attempts) < 3:
            await asyncio.sleep(0.02)
        # After its last attempt the job is dropped (failed jobs are trimmed).
        while True:
            counts = await queue.counts()
            if not any(counts[state] for state in ("waiting", "active", "delayed")):
                break
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # a fourth attempt would show up here
    assert [a for a, _ in attempts] == [1, 2, 3]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095
    await queue.add("x")  # dropped, so the id is free again: it runs anew
    async with asyncio.timeout(5):
        while len(attempts) < 4:
            await asyncio.sleep(0.02)
    assert attempts[3][0] == 1


async def test_delay_puts_the_job_back_without_spending_an_attempt(queue: JobQueue) -> None:
    attempts: list[int] = []
    finished = asyncio.Event()

    async def handler(job: Job) -> None:
        attempts.append(job.attempt)
        if len(attempts) < 4:
            raise Delay(20)
        finished.set()

    await queue.start_worker(handler, concurrency=1)
    await queue.add("d")
    await asyncio.wait_for(finished.wait(), 5)
    assert attempts == [1, 1, 1, 1]


async def test_delayed_add_waits(queue: JobQueue) -> None:
    ran = asyncio.Event()

    async def handler(job: Job) -> None:
        ran.set()

    await queue.start_worker(handler, concurrency=1)
    await queue.add("later", delay_ms=200)
    assert (await queue.counts())["delayed"] == 1
    await asyncio.sleep(0.1)
    assert not ran.is_set()
    await asyncio.wait_for(ran.wait(), 2)


async def test_concurrency_is_respected(queue: JobQueue) -> None:
    running = 0
    peak = 0

    async def handler(job: Job) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    await queue.start_worker(handler, concurrency=3)
    for n in range(10):
        await queue.add(f"j{n}")
    for _ in range(100):
        counts = await queue.counts()
        if counts["waiting"] == 0 and counts["active"] == 0:
            break
        await asyncio.sleep(0.02)
    assert peak == 3


async def test_stop_hands_unfinished_jobs_back(queue: JobQueue) -> None:
    started = asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()
        await asyncio.sleep(10)

    await queue.start_worker(handler, concurrency=1)
    await queue.add("long")
    await asyncio.wait_for(started.wait(), 2)
    await queue.stop_worker(grace_s=0.05)
    counts = await queue.counts()
    assert counts["waiting"] + counts["delayed"] == 1 and counts["active"] == 0


async def test_several_jobs_handed_back_at_once_all_run_again(queue: JobQueue) -> None:
    started: list[str] = []
    again: list[str] = []
    first_round = True

    async def handler(job: Job) -> None:
        if first_round:
            started.append(job.id)
            await asyncio.sleep(10)
        again.append(job.id)

    await queue.start_worker(handler, concurrency=3)
    for n in range(3):
        await queue.add(f"long-{n}", priority=7)
    async with asyncio.timeout(5):
        while len(started) < 3:
            await asyncio.sleep(0.01)
    await queue.stop_worker(grace_s=0.05)
    counts = await queue.counts()
    assert counts["waiting"] + counts["delayed"] == 3 and counts["active"] == 0
    first_round = False
    await queue.start_worker(handler, concurrency=3)
    async with asyncio.timeout(5):
        while len(again) < 3:
            await asyncio.sleep(0.01)
    assert sorted(again) == ["long-0", "long-1", "long-2"]
