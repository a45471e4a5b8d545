"""Key revocations across processes: a Redis pub/sub channel every `serve` process listens to."""

from __future__ import annotations

from workflow_engine.engine.keys import KeyRevocations, OnRevoked
from workflow_engine.redis_support.client import KEY_PREFIX
from workflow_engine.redis_support.pubsub import Channel

CHANNEL = f"{KEY_PREFIX}:keys:revoked"


class RedisKeyRevocations(KeyRevocations):
    """Each revoked key's id is published; the listeners drop it from their cache. A message
    lost (Redis restarting) leaves the key cached until API_KEY_CACHE_MS runs out."""

    def __init__(self, url: str, *, channel: str = CHANNEL) -> None:
        self._channel = Channel(url, channel)

    async def publish(self, key_id: str) -> None:
        await self._channel.publish(key_id)

    def listen(self, on_revoked: OnRevoked) -> None:
        self._channel.listen(on_revoked)

    async def close(self) -> None:
        await self._channel.close()
