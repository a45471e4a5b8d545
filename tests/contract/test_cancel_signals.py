"""The CancelSignals contract: one suite, run on the in-process signals and on Redis pub/sub.

Each test gets a `sender` (where the API asks for the cancel) and a `receiver` (where the worker
running the execution watches): the same object in-process, two processes' worth on Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from tests.support.services import REDIS_HOST, REDIS_PORT, REDIS_URL, require
from workflow_engine.engine.cancel import CancelSignals, LocalCancelSignals
from workflow_engine.redis_support.cancel import RedisCancelSignals

pytestmark = pytest.mark.timeout(15)
ARRIVES_S = 5.0


@dataclass
class Signals:
    sender: CancelSignals
    receiver: CancelSignals

    async def arrived(self, event: asyncio.Event) -> None:
        await asyncio.wait_for(event.wait(), ARRIVES_S)

    async def settle(self) -> None:
        """Returns once every request sent before it has reached the receiver (pub/sub keeps
        the order of one publisher's messages)."""
        barrier = f"barrier-{uuid.uuid4().hex}"
        event = self.receiver.watch(barrier)
        try:
            await self.sender.request(barrier)
            await self.arrived(event)
        finally:
            self.receiver.unwatch(barrier, event)


async def _subscribed(channel: str, listeners: int) -> None:
    client = aioredis.from_url(REDIS_URL)
    try:
        for _ in range(200):
            [(_name, count)] = await client.pubsub_numsub(channel)
            if count >= listeners:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{listeners} listeners never subscribed to {channel}")
    finally:
        await client.aclose()


@pytest.fixture(params=["local", "redis"])
async def signals(request: pytest.FixtureRequest) -> AsyncIterator[Signals]:
    if request.param == "local":
        local = LocalCancelSignals()
        yield Signals(local, local)
        return
    require("Redis", REDIS_HOST, REDIS_PORT)
    channel = f"test-cancel-{uuid.uuid4().hex[:8]}"
    sender = RedisCancelSignals(REDIS_URL, channel=channel)
    receiver = RedisCancelSignals(REDIS_URL, channel=channel)
    sender.start_listening()
    receiver.start_listening()
    try:
        await _subscribed(channel, 2)
        yield Signals(sender, receiver)
    finally:
        await sender.close()
        await receiver.close()


def new_id() -> str:
    return f"execution-{uuid.uuid4().hex}"


async def test_a_request_reaches_the_watcher_of_its_execution_only(signals: Signals) -> None:
    target, other = new_id(), new_id()
    watched = signals.receiver.watch(target)
    bystander = signals.receiver.watch(other)
    await signals.sender.request(target)
    await signals.arrived(watched)
    await signals.settle()
    assert not bystander.is_set()


async def test_every_watch_of_an_execution_gets_its_own_event_and_the_request(
    signals: Signals,
) -> None:
    execution_id = new_id()
    first = signals.receiver.watch(execution_id)
    second = signals.receiver.watch(execution_id)
    assert first is not second
    await signals.sender.request(execution_id)
    await signals.arrived(first)
    await signals.arrived(second)


async def test_an_unwatched_event_is_left_alone(signals: Signals) -> None:
    execution_id = new_id()
    earlier = signals.receiver.watch(execution_id)
    signals.receiver.unwatch(execution_id, earlier)
    later = signals.receiver.watch(execution_id)  # the next delivery of the same execution
    await signals.sender.request(execution_id)
    await signals.arrived(later)
    assert not earlier.is_set()
    signals.receiver.unwatch(execution_id, later)
    signals.receiver.unwatch(execution_id, later)  # twice: a no-op


async def test_a_request_nobody_watches_is_not_kept(signals: Signals) -> None:
    execution_id = new_id()
    await signals.sender.request(execution_id)
    await signals.settle()
    # Signals are not stored: the executor that starts later reads the row's cancel request.
    late = signals.receiver.watch(execution_id)
    await signals.settle()
    assert not late.is_set()


async def test_a_request_reaches_a_watcher_in_the_sending_process_too(signals: Signals) -> None:
    execution_id = new_id()
    here = signals.sender.watch(execution_id)
    there = signals.receiver.watch(execution_id)
    await signals.sender.request(execution_id)
    await signals.arrived(here)
    await signals.arrived(there)
