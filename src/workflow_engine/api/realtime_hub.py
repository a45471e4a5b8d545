"""Fans execution events out to Socket.io clients (DESIGN.md section 7).

Two kinds of listeners:
- execution subscribers (`subscribe`): each (client, execution) pair has its own delivery task
  and queue. It first sends the stored events from `execution_events` (all, or after the
  client's `afterSeq`), then the live ones, dropping any `seq` already sent and filling any gap
  from the database. Events are committed before they are published, so the database always
  holds whatever a client is missing: no loss, no duplicates, always in `seq` order.
- rooms (`subscribe_workflow`, `subscribe_all`): live events only, one emit per event, for list
  pages: `started`, `waiting`, `resumed`, `completed`, `failed` and `cancelled`, plus the step
  events for clients that ask with `{"steps": true}`. A list needs no more, and with a hundred
  clients every event a room carries costs a hundred frames. `log` and `step_delta` events go
  to execution subscribers only.

The bus callback only puts the event in a queue, so a slow browser never slows the executor.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from workflow_engine.domain.status import EventType
from workflow_engine.events.bus import Event, EventBus
from workflow_engine.storage import executions as store
from workflow_engine.storage.db import Database

log = logging.getLogger(__name__)
ALL_ROOM = "all"
CATCH_UP_PAGE = 500
EXECUTION_EVENT_TYPES = frozenset(
    {
        EventType.STARTED,
        EventType.WAITING,
        EventType.RESUMED,
        EventType.COMPLETED,
        EventType.FAILED,
        EventType.CANCELLED,
    }
)
STEP_EVENT_TYPES = frozenset(
    {
        EventType.STEP_STARTED,
        EventType.STEP_COMPLETED,
        EventType.STEP_FAILED,
        EventType.STEP_RETRYING,
    }
)


def workflow_room(workflow_id: str) -> str:
    return f"workflow:{workflow_id}"


def steps_room(room: str) -> str:
    """The room of the clients of `room` that also asked for step events."""
    return f"{room}+steps"


def batch_room(room: str) -> str:
    """The clients of `room` that take its events in batches (one `events` message with a list,
    every BATCH_INTERVAL_S): a list page needs no more, and it costs a frame per batch instead of
    a frame per event per client."""
    return f"{room}+batch"


BATCH_INTERVAL_S = 0.1


@dataclass
class _Subscription:
    sid: str
    execution_id: str
    workflow_id: str
    last_seq: int
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class RealtimeHub:
    """Owns every execution subscription of this process; `sio` is the Socket.io server."""

    def __init__(self, sio: Any) -> None:
        self.sio = sio
        self.db: Database | None = None
        self._by_execution: dict[str, dict[str, _Subscription]] = {}
        self._inbox: asyncio.Queue[Event] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self._unsubscribe_bus: Any = None
        self._batches: dict[str, list[dict[str, Any]]] = {}
        self._batcher: asyncio.Task[None] | None = None

    async def start(self, db: Database, bus: EventBus) -> None:
        self.db = db
        self._inbox = asyncio.Queue()
        self._unsubscribe_bus = bus.subscribe(self._on_event)
        self._pump = asyncio.create_task(self._run_pump(), name="realtime-pump")

    async def stop(self) -> None:
        if self._unsubscribe_bus is not None:
            self._unsubscribe_bus()
            self._unsubscribe_bus = None
        tasks = [s.task for subs in self._by_execution.values() for s in subs.values() if s.task]
        if self._pump is not None:
            tasks.append(self._pump)
        if self._batcher is not None:
            tasks.append(self._batcher)
            self._batcher = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._by_execution.clear()
        self._pump = None

    # --- execution subscriptions ----------------------------------------------------------------

    def subscribe(self, sid: str, execution_id: str, workflow_id: str, after_seq: int) -> None:
        """Start (or restart, from `after_seq`) the delivery of one execution to one client."""
        self.unsubscribe(sid, execution_id)
        sub = _Subscription(sid, execution_id, workflow_id, last_seq=max(after_seq, 0))
        # Registered before the catch-up reads the database, so no live event can fall between.
        self._by_execution.setdefault(execution_id, {})[sid] = sub
        sub.task = asyncio.create_task(self._deliver(sub), name=f"deliver-{sid}-{execution_id}")

    def unsubscribe(self, sid: str, execution_id: str) -> bool:
        subs = self._by_execution.get(execution_id)
        sub = subs.pop(sid, None) if subs else None
        if subs is not None and not subs:
            del self._by_execution[execution_id]
        if sub is None:
            return False
        if sub.task is not None:
            sub.task.cancel()
        return True

    def drop_client(self, sid: str) -> None:
        for execution_id in [e for e, subs in self._by_execution.items() if sid in subs]:
            self.unsubscribe(sid, execution_id)

    def count(self, sid: str) -> int:
        return sum(1 for subs in self._by_execution.values() if sid in subs)

    # --- event flow -----------------------------------------------------------------------------

    async def _on_event(self, event: Event) -> None:
        self._inbox.put_nowait(event)

    async def _run_pump(self) -> None:
        while True:
            event = await self._inbox.get()
            try:
                await self._dispatch(event)
            except Exception:
                log.exception("could not dispatch %s of %s", event.type, event.execution_id)

    async def _dispatch(self, event: Event) -> None:
        subs = self._by_execution.get(event.execution_id, {})
        for sub in subs.values():
            sub.queue.put_nowait(event)
        rooms = [ALL_ROOM, workflow_room(event.workflow_id)]
        if event.type in STEP_EVENT_TYPES:
            rooms = [steps_room(room) for room in rooms]
        elif event.type not in EXECUTION_EVENT_TYPES:
            return
        # Only rooms with members here (the server's manager is in-process): an event nobody in
        # this process listens to is neither encoded nor sent.
        live = [room for room in rooms if self._has_members(room)]
        batched = [batch_room(room) for room in rooms if self._has_members(batch_room(room))]
        if not live and not batched:
            return
        payload = event.payload()
        if live:
            # A client following this execution gets it once, from its ordered stream.
            await self.sio.emit(event.type, payload, room=live, skip_sid=list(subs))
        for room in batched:
            self._batches.setdefault(room, []).append({"event": event.type, **payload})
        if batched and (self._batcher is None or self._batcher.done()):
            self._batcher = asyncio.create_task(self._flush_batches(), name="realtime-batches")

    def _has_members(self, room: str) -> bool:
        return bool(self.sio.manager.rooms.get("/", {}).get(room))

    async def _flush_batches(self) -> None:
        """Send what the batch rooms collected, every BATCH_INTERVAL_S, until there is nothing."""
        while self._batches:
            await asyncio.sleep(BATCH_INTERVAL_S)
            batches, self._batches = self._batches, {}
            for room, items in batches.items():
                try:
                    await self.sio.emit("events", items, room=room)
                except Exception:
                    log.exception("could not send a batch of %d events", len(items))

    async def _deliver(self, sub: _Subscription) -> None:
        try:
            await self._catch_up(sub)
            while True:
                event = await sub.queue.get()
                if event.seq <= sub.last_seq:
                    continue  # already sent by a catch-up
                if event.seq > sub.last_seq + 1:
                    await self._catch_up(sub)  # a gap (e.g. a lost pub/sub message)
                    if event.seq <= sub.last_seq:
                        continue
                await self._send(sub, event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery of %s to %s stopped", sub.execution_id, sub.sid)

    async def _catch_up(self, sub: _Subscription) -> None:
        """Send every stored event after `sub.last_seq`, in order."""
        assert self.db is not None
        while True:
            async with self.db.read() as conn:
                rows = await store.list_events(
                    conn, sub.execution_id, after_seq=sub.last_seq, limit=CATCH_UP_PAGE
                )
            for row in rows:
                await self._send(sub, Event.from_row(row, sub.workflow_id))
            if len(rows) < CATCH_UP_PAGE:
                return

    async def _send(self, sub: _Subscription, event: Event) -> None:
        await self.sio.emit(event.type, event.payload(), to=sub.sid)
        sub.last_seq = event.seq
