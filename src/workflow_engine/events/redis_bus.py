"""Events across processes (distributed mode): workers publish, `serve` listens.

Workers only write: each event goes to a Redis pub/sub channel of the engine's own
(`workflow-engine:events`), after its row is committed in `execution_events`. A `serve` process
subscribes to the channel and hands the events to its in-process subscribers (the Socket.io hub),
which alone talks to browsers. Pub/sub may drop messages while a connection is down; that is
acceptable because the database holds every event and the hub fills any `seq` gap from it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from workflow_engine.events.bus import Event, EventBus, LocalEventBus, Subscriber
from workflow_engine.redis_support.client import KEY_PREFIX
from workflow_engine.redis_support.pubsub import Channel

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
        self._channel = Channel(url, channel)
        self._local = LocalEventBus()

    async def publish(self, event: Event) -> None:
        # Best effort: the row is in execution_events, subscribers catch up from there.
        await self._channel.publish(encode(event))

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._channel.listen(self._received)
        return self._local.subscribe(subscriber)

    async def _received(self, raw: str) -> None:
        try:
            event = decode(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed message on %s", self._channel.name)
            return
        await self._local.publish(event)

    async def close(self) -> None:
        await self._channel.close()
