"""Cancel signals: how a cancel request reaches the executor running the execution.

The request is also stored on the execution row (`cancel_requested_at`), which each executor reads
at every lease renewal, so a cancel still lands when a signal is missed.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod


class CancelSignals(ABC):
    @abstractmethod
    async def request(self, execution_id: str) -> None:
        """Tell whichever worker runs `execution_id` to stop it."""

    @abstractmethod
    def watch(self, execution_id: str) -> asyncio.Event:
        """An event set when a cancel for `execution_id` arrives; call `unwatch` when done."""

    @abstractmethod
    def unwatch(self, execution_id: str) -> None: ...


class LocalCancelSignals(CancelSignals):
    """Signals within one process (embedded mode, and the receiving end of the Redis one)."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    async def request(self, execution_id: str) -> None:
        self.deliver(execution_id)

    def deliver(self, execution_id: str) -> None:
        event = self._events.get(execution_id)
        if event is not None:
            event.set()

    def watch(self, execution_id: str) -> asyncio.Event:
        return self._events.setdefault(execution_id, asyncio.Event())

    def unwatch(self, execution_id: str) -> None:
        self._events.pop(execution_id, None)
