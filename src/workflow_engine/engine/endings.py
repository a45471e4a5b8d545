"""Waiting, in the API, for an execution to end (`POST /api/hooks/{path}?wait=`).

The execution's final event on the bus (published once its final status is committed, by
whichever process ran it) wakes the waiter at once; the database, the truth, is read first,
then on each wake-up and at least every POLL_S, because pub/sub may lose a message (Redis
reconnecting). One bus subscription serves every waiter of the process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from workflow_engine.domain.status import EventType, ExecutionStatus
from workflow_engine.events.bus import Event, EventBus
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage.db import Database, Row

POLL_S = 0.5
ENDED = frozenset({EventType.COMPLETED.value, EventType.FAILED.value, EventType.CANCELLED.value})


class Endings:
    def __init__(self, db: Database, bus: EventBus) -> None:
        self.db = db
        self.bus = bus
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._unsubscribe: Callable[[], None] | None = None

    async def _on_event(self, event: Event) -> None:
        if event.type in ENDED:
            for signal in self._waiters.get(event.execution_id, ()):
                signal.set()

    async def _ended(self, execution_id: str) -> Row | None:
        async with self.db.read() as conn:
            row = await ex_store.get_execution(conn, execution_id)
        return row if ExecutionStatus(row["status"]).is_final else None

    async def wait(self, execution_id: str, timeout_s: float) -> Row | None:
        """The execution's row once it has ended, or None if it has not within `timeout_s`."""
        if self._unsubscribe is None:
            self._unsubscribe = self.bus.subscribe(self._on_event)
        signal = asyncio.Event()
        self._waiters.setdefault(execution_id, set()).add(signal)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            while True:
                signal.clear()
                row = await self._ended(execution_id)
                left = deadline - loop.time()
                if row is not None or left <= 0:
                    return row
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(signal.wait(), min(left, POLL_S))
        finally:
            waiters = self._waiters[execution_id]
            waiters.discard(signal)
            if not waiters:
                del self._waiters[execution_id]
