"""Re-queues what the database says is unfinished, so a lost job or a dead worker loses nothing.

- `pending` executions not touched for a while get their dispatch job again (a no-op when held);
- `running` executions whose lease expired get an execution job (the claim takes them over);
- `waiting` executions whose timer is due are woken (`pending`) and get their dispatch job (the
  timer's own delayed job may have been lost with Redis, or with the embedded process);
- debounced triggers' bursts past their time are fired (their timer job may have been lost);
- events kept past EVENT_RETENTION_MS are forgotten.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from workflow_engine import metrics
from workflow_engine.engine import debounce
from workflow_engine.queue.base import JobQueue
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import waits as wait_store
from workflow_engine.storage.db import Database

log = logging.getLogger(__name__)
BATCH = 500


class Reconciler:
    def __init__(
        self,
        db: Database,
        dispatch_queue: JobQueue,
        execution_queue: JobQueue,
        *,
        interval_ms: int,
        is_leader: Callable[[], Awaitable[bool]] | None = None,
        also: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.db = db
        self.is_leader = is_leader
        self.also = also
        """Extra upkeep run on each leader pass (re-registering schedules lost with Redis)."""
        self.dispatch_queue = dispatch_queue
        self.execution_queue = execution_queue
        self.interval_ms = interval_ms

    async def run_once(self, *, pending_grace_ms: int | None = None) -> int:
        """One pass; returns how many executions it queued again (a queue ignores the id of a
        job it still holds, so some of these may have been queued already)."""
        grace = self.interval_ms * 2 if pending_grace_ms is None else pending_grace_ms
        older_than = ex_store.now() - timedelta(milliseconds=grace)
        async with self.db.read() as conn:
            pending = await ex_store.stale_pending_ids(conn, older_than=older_than, limit=BATCH)
            expired = await ex_store.expired_running_ids(conn, limit=BATCH)
        # Added together, so the queue sends them in one pipeline (its add is batched).
        await asyncio.gather(
            *(
                self.dispatch_queue.add(execution_id, priority=priority)
                for execution_id, priority in pending
            )
        )
        if pending:
            async with self.db.write() as conn:
                await ex_store.touch(conn, [execution_id for execution_id, _ in pending])
        await asyncio.gather(*(self.execution_queue.add(execution_id) for execution_id in expired))
        woken = await self._wake_due()
        fired = await debounce.fire_due(self.db, self.dispatch_queue)
        metrics.requeued(pending=len(pending) + len(woken), expired=len(expired))
        queued = len(pending) + len(expired) + len(woken) + len(fired)
        if queued:
            log.info("reconciler queued %d unfinished execution(s) again", queued)
        return queued

    async def _wake_due(self) -> list[str]:
        async with self.db.read() as conn:
            due = await wait_store.due_waiting_ids(conn, limit=BATCH)
        if not due:
            return []
        async with self.db.write() as conn:
            woken = await wait_store.wake_many(conn, due)
        await asyncio.gather(*(self.dispatch_queue.add(execution_id) for execution_id in woken))
        return woken

    async def forget_expired_events(self) -> None:
        async with self.db.write() as conn:
            await wait_store.delete_expired_events(conn, limit=BATCH)

    async def run_forever(self) -> None:
        """Pass after pass; with several processes only the leader of the moment works."""
        while True:
            try:
                if self.is_leader is None or await self.is_leader():
                    await self.run_once()
                    await self.forget_expired_events()
                    if self.also is not None:
                        await self.also()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconciler pass failed; will try again")
            await asyncio.sleep(self.interval_ms / 1000)
