"""Cancel signals across processes: a Redis pub/sub channel every worker process listens to."""

from __future__ import annotations

import asyncio
import logging

from workflow_engine.engine.cancel import LocalCancelSignals
from workflow_engine.redis_support.client import KEY_PREFIX, connect
from workflow_engine.redis_support.pubsub import listen_forever

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
        await listen_forever(self._url, CHANNEL, self._received)

    async def _received(self, execution_id: str) -> None:
        self.deliver(execution_id)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        await self._publisher.aclose()
