"""Cancel signals: how a cancel request reaches the executor running the execution.

The request is also stored on the execution row (`cancel_requested_at`), which each executor reads
at every lease renewal, so a cancel still lands when a signal is missed.

Two implementations, chosen in `bootstrap`: `LocalCancelSignals` here (one process) and
`redis_support/cancel.py` (Redis pub/sub, across processes); tests/contract/test_cancel_signals.py
holds both to the same contract.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable


class CancelSignals(ABC):
    """The service `request`s; the executor `watch`es each execution it runs. Signals are not
    kept: a request that comes before the watch is not seen by it (the row is)."""

    @abstractmethod
    async def request(self, execution_id: str) -> None:
        """Tell whichever worker runs `execution_id` to stop it."""

    @abstractmethod
    def watch(self, execution_id: str) -> CancelFlag:
        """A new event, set when a cancel for `execution_id` arrives; `unwatch` it when done.
        Each delivery of an execution gets its own, so one run's state never leaks into another."""

    @abstractmethod
    def unwatch(self, execution_id: str, event: asyncio.Event) -> None: ...


class CancelFlag(asyncio.Event):
    """An event that also calls back when set: the executor halts a running execution from the
    callback, with no task waiting on the event for the whole run."""

    def __init__(self) -> None:
        super().__init__()
        self._callbacks: list[Callable[[], None]] = []

    def set(self) -> None:
        if self.is_set():
            return
        super().set()
        for callback in list(self._callbacks):
            callback()

    def when_set(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` when the flag is set (now, if it is); returns what stops that."""
        if self.is_set():
            callback()
            return lambda: None
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None


class LocalCancelSignals(CancelSignals):
    """Signals within one process (embedded mode, and the receiving end of the Redis one)."""

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = {}

    async def request(self, execution_id: str) -> None:
        self.deliver(execution_id)

    def deliver(self, execution_id: str) -> None:
        for event in self._events.get(execution_id, ()):
            event.set()

    def watch(self, execution_id: str) -> CancelFlag:
        event = CancelFlag()
        self._events.setdefault(execution_id, set()).add(event)
        return event

    def unwatch(self, execution_id: str, event: asyncio.Event) -> None:
        watchers = self._events.get(execution_id)
        if watchers is not None:
            watchers.discard(event)
            if not watchers:
                del self._events[execution_id]
