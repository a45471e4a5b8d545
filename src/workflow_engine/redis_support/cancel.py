"""Cancel signals across processes: a Redis pub/sub channel every worker process listens to."""

from __future__ import annotations

from workflow_engine.engine.cancel import LocalCancelSignals
from workflow_engine.redis_support.client import KEY_PREFIX
from workflow_engine.redis_support.pubsub import Channel

CHANNEL = f"{KEY_PREFIX}:cancel"


class RedisCancelSignals(LocalCancelSignals):
    """Requests published on `channel`; once `start_listening` was called, the requests of
    every process (this one included) reach this process's watchers."""

    def __init__(self, url: str, *, channel: str = CHANNEL) -> None:
        super().__init__()
        self._channel = Channel(url, channel)

    async def request(self, execution_id: str) -> None:
        self.deliver(execution_id)
        # If this is lost, the row's cancel_requested_at reaches the worker at its next renewal.
        await self._channel.publish(execution_id)

    def start_listening(self) -> None:
        self._channel.listen(self._received)

    async def _received(self, execution_id: str) -> None:
        self.deliver(execution_id)

    async def close(self) -> None:
        await self._channel.close()
