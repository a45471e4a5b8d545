"""Cancel signals across processes: a Redis pub/sub channel every worker process listens to."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from workflow_engine.engine.cancel import LocalCancelSignals
from workflow_engine.redis_support.client import KEY_PREFIX, connect

log = logging.getLogger(__name__)
CHANNEL = f"{KEY_PREFIX}:cancel"


class RedisCancelSignals(LocalCancelSignals):
    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self._publisher = connect(url)
        self._listener: asyncio.Task[None] | None = None

    async def request(self, execution_id: str) -> None:
        self.deliver(execution_id)
        try:
            await self._publisher.publish(CHANNEL, execution_id)
        except Exception:
            # The row's cancel_requested_at still reaches the worker at its next lease renewal.
            log.warning(
                "could not publish the cancel of %s; the worker will see it later", execution_id
            )

    def start_listening(self) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="cancel-listener")

    async def _listen(self) -> None:
        delay = 0.2
        while True:
            client: aioredis.Redis = connect(self._url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    delay = 0.2
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.deliver(str(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cancel channel lost (%s); reconnecting in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)
            finally:
                await client.aclose()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        await self._publisher.aclose()
