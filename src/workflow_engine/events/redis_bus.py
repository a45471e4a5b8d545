"""Events across processes (distributed mode): workers publish, `serve` listens.

Workers only write: each event goes to a Redis pub/sub channel of the engine's own
(`workflow-engine:events`), after its row is committed in `execution_events`. A `serve` process
subscribes to the channel and hands the events to its in-process subscribers (the Socket.io hub),
which alone talks to browsers. Pub/sub may drop messages while a connection is down; that is
acceptable because the database holds every event and the hub fills any `seq` gap from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from workflow_engine import fastjson
from workflow_engine.events.bus import Event, EventBus, LocalEventBus, Subscriber
from workflow_engine.redis_support.client import KEY_PREFIX
from workflow_engine.redis_support.pubsub import Channel

log = logging.getLogger(__name__)
CHANNEL = f"{KEY_PREFIX}:events"


MAX_PER_MESSAGE = 200
"""Events per PUBLISH, so one message stays far below Redis's pub/sub output buffer limits."""
CLOSE_TIMEOUT_S = 5.0
MAX_BUFFERED = 10_000
"""Events waiting to be sent beyond this are dropped (Redis unreachable for long): the database
still holds them, and subscribers fill the gap from there."""


def _body(event: Event) -> dict[str, Any]:
    return {
        "type": event.type,
        "executionId": event.execution_id,
        "workflowId": event.workflow_id,
        "seq": event.seq,
        "data": event.data,
        "timestamp": event.timestamp.isoformat(),
    }


def encode(events: list[Event]) -> str:
    """One message carries every event published since the last one was sent, in order."""
    return fastjson.dumps([_body(event) for event in events], default=str)


def decode(raw: str | bytes) -> list[Event]:
    """The events of one message: a list (this version) or a lone event (earlier ones, during
    a rolling upgrade)."""
    decoded: Any = json.loads(raw)
    bodies: list[dict[str, Any]] = [decoded] if isinstance(decoded, dict) else decoded
    return [
        Event(
            type=body["type"],
            execution_id=body["executionId"],
            workflow_id=body["workflowId"],
            seq=int(body["seq"]),
            data=body["data"],
            timestamp=datetime.fromisoformat(body["timestamp"]),
        )
        for body in bodies
    ]


class RedisEventBus(EventBus):
    """Publishes to the Redis channel; `subscribe` (only `serve` calls it) starts a listener.

    `publish` does not wait for Redis: events are buffered and one sender task sends all that
    accumulated as a single message, so a busy worker pays one PUBLISH per batch, not per event,
    and a process's events keep their order.
    """

    def __init__(self, url: str, *, channel: str = CHANNEL) -> None:
        self._channel = Channel(url, channel)
        self._local = LocalEventBus()
        self._buffer: list[Event] = []
        self._sender: asyncio.Task[None] | None = None

    async def publish(self, event: Event) -> None:
        # Best effort: the row is in execution_events, subscribers catch up from there.
        if len(self._buffer) >= MAX_BUFFERED:
            log.warning("event buffer full; dropping an event (the database keeps it)")
            return
        self._buffer.append(event)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="publish events")

    async def _send(self) -> None:
        while self._buffer:
            batch = self._buffer[:MAX_PER_MESSAGE]
            del self._buffer[:MAX_PER_MESSAGE]
            await self._channel.publish(encode(batch))

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._channel.listen(self._received)
        return self._local.subscribe(subscriber)

    async def _received(self, raw: str) -> None:
        try:
            events = decode(raw)
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignoring a malformed message on %s", self._channel.name)
            return
        for event in events:
            await self._local.publish(event)

    async def close(self) -> None:
        if self._sender is not None:
            # Bounded: with Redis down each publish waits on its retries.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sender, CLOSE_TIMEOUT_S)
        await self._channel.close()
