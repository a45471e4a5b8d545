"""Events across processes (distributed mode): workers publish, `serve` listens.

Workers only write: each event goes to a Redis pub/sub channel of the engine's own
(`workflow-engine:events`), after its row is committed in `execution_events`. A `serve` process
subscribes to the channel and hands the events to its in-process subscribers (the Socket.io hub),
which alone talks to browsers. Pub/sub may drop messages while a connection is down; that is
acceptable because the database holds every event and the hub fills any `seq` gap from it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from workflow_engine.events.bus import Event, EventBus, LocalEventBus, Subscriber
from workflow_engine.redis_support.client import KEY_PREFIX, connect
from workflow_engine.redis_support.pubsub import listen_forever

log = logging.getLogger(__name__)
CHANNEL = f"{KEY_PREFIX}:events"


def encode(event: Event) -> str:
    return json.dumps(
        {
            "type": event.type,
            "executionId": event.execution_id,
            "workflowId": event.workflow_id,
            "seq": event.seq,
            "data": event.data,
            "timestamp": event.timestamp.isoformat(),
        },
        default=str,
    )


def decode(raw: str | bytes) -> Event:
    body: dict[str, Any] = json.loads(raw)
    return Event(
        type=body["type"],
        execution_id=body["executionId"],
        workflow_id=body["workflowId"],
        seq=int(body["seq"]),
        data=body["data"],
        timestamp=datetime.fromisoformat(body["timestamp"]),
    )


class RedisEventBus(EventBus):
    """Publishes to the Redis channel; `subscribe` (only `serve` calls it) starts a listener."""

    def __init__(self, url: str, *, channel: str = CHANNEL) -> None:
        self._url = url
        self._channel = channel
        self._publisher = connect(url)
        self._local = LocalEventBus()
        self._listener: asyncio.Task[None] | None = None

    async def publish(self, event: Event) -> None:
        try:
            await self._publisher.publish(self._channel, encode(event))
        except Exception as exc:
            # Best effort: the row is in execution_events, subscribers catch up from there.
            log.warning("could not publish event %s of %s: %s", event.seq, event.execution_id, exc)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="event-listener")
        return self._local.subscribe(subscriber)

    async def _listen(self) -> None:
        await listen_forever(self._url, self._channel, self._received)

    async def _received(self, raw: str) -> None:
        try:
            event = decode(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed message on %s", self._channel)
            return
        await self._local.publish(event)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        await self._publisher.aclose()
