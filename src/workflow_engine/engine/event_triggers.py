"""`event` triggers (DESIGN.md section 14): `POST /api/events` starts every workflow listening
to the event's name, with the event's `data` as input.

The executions are inserted in the transaction that stores the event, so an event is never
stored without them (nor they without it), whichever `serve` process took it; each carries the
idempotency key `event:{eventId}:{triggerId}`, so one event starts a trigger's workflow once,
even if the same event were handled twice. They are queued after the commit (the reconciler
queues a `pending` row whose job was lost). A debounced trigger keeps the event instead, in the
same transaction (engine/debounce.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.engine import debounce
from workflow_engine.errors import DuplicateKey
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import workflows as wf_store


@dataclass(frozen=True)
class TriggeredStart:
    """An execution an event started through a trigger."""

    execution_id: str
    workflow_id: str
    trigger_id: str


def idempotency_key(event_id: str, trigger_id: str) -> str:
    return f"event:{event_id}:{trigger_id}"


@dataclass(frozen=True)
class TriggeredStarts:
    started: list[TriggeredStart]
    held: list[debounce.Held]
    """The debounced triggers that kept the event (their timers to queue)."""


async def start_event_triggers(
    conn: AsyncConnection, name: str, event_id: str, data: Any
) -> TriggeredStarts:
    """Insert a `pending` execution per enabled `event` trigger listening to `name` (of live
    workflows), in the caller's transaction; a debounced trigger keeps the event instead. The
    caller queues them (and the debounce timers) once it committed."""
    started = []
    held = []
    for trigger in await wf_store.event_triggers(conn, name):
        kept = await debounce.hold(conn, trigger, data if data is not None else {})
        if kept is not None:
            held.append(kept)
            continue
        new = ex_store.NewExecution(
            workflow_id=trigger["workflow_id"],
            workflow_version_id=trigger["active_version_id"],
            # No data is no input, as for execute.
            input=data if data is not None else {},
            trigger_id=trigger["id"],
            idempotency_key=idempotency_key(event_id, trigger["id"]),
        )
        try:
            execution_id = await ex_store.insert_keyed_execution(conn, new)
        except DuplicateKey:
            continue  # this event started it already
        started.append(TriggeredStart(execution_id, trigger["workflow_id"], trigger["id"]))
    return TriggeredStarts(started, held)
