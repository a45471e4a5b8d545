"""Listening on a Redis pub/sub channel for as long as the process runs, across Redis restarts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from workflow_engine.redis_support.client import connect

log = logging.getLogger(__name__)


async def listen_forever(
    url: str, channel: str, on_message: Callable[[str], Awaitable[None]]
) -> None:
    """Call `on_message` with each message's data; reconnect with backoff when Redis goes away.

    Messages published while disconnected are lost (pub/sub keeps nothing): callers rely on the
    database for anything that must not be missed.
    """
    delay = 0.2
    while True:
        # No socket timeout: a quiet channel is normal and must not look like a failure.
        client = aioredis.from_url(
            url, decode_responses=True, socket_connect_timeout=5, health_check_interval=15
        )
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(channel)
                delay = 0.2
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        await on_message(str(message["data"]))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("channel %s lost (%s); reconnecting in %.1f s", channel, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5)
        finally:
            await client.aclose()


class Channel:
    """A pub/sub channel of the engine's own: best-effort `publish`, an optional listener task
    started by `listen`, and `close` for both."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self._publisher = connect(url)
        self._listener: asyncio.Task[None] | None = None

    async def publish(self, message: str) -> bool:
        """False (logged) when Redis is unreachable: callers keep the database as the truth."""
        try:
            await self._publisher.publish(self.name, message)
        except Exception as exc:
            log.warning("could not publish on %s: %s", self.name, exc)
            return False
        return True

    def listen(self, on_message: Callable[[str], Awaitable[None]]) -> None:
        """Start delivering messages to `on_message` (once; later calls do nothing)."""
        if self._listener is None:
            self._listener = asyncio.create_task(
                listen_forever(self.url, self.name, on_message), name=f"listen {self.name}"
            )

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        await self._publisher.aclose()
