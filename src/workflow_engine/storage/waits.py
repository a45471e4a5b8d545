"""Durable waits in the database (DESIGN.md section 14): parking an execution, waking it, events.

One rule makes every wake-up happen once: a `waiting` execution leaves that status only through
a conditional UPDATE (`... WHERE status = 'waiting'`), and only the caller whose UPDATE flipped it
queues it (the timer's delayed job, the reconciler's scan, an event, a cancel: whichever is
first). Parking is fenced like every executor write: it succeeds only for the fencing token that
holds the lease, and releases the lease in the same statement.

Events and waits meet under a lock per (name, key) (a transaction-scoped advisory lock on
PostgreSQL; SQLite has one writer at a time anyway), so an event posted while a wait registers
is either matched by the event's transaction or found stored by the wait's: never neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.domain.status import EventType, ExecutionStatus, StepStatus
from workflow_engine.errors import LeaseLost
from workflow_engine.ids import new_id
from workflow_engine.storage.executions import last_event_seq, log_event_row, now
from workflow_engine.storage.tables import (
    events,
    execution_events,
    execution_logs,
    execution_steps,
    execution_waits,
    executions,
)

WAITING = ExecutionStatus.WAITING.value
RUNNING = ExecutionStatus.RUNNING.value
PENDING = ExecutionStatus.PENDING.value
DELAY = "delay"
EVENT = "event"
APPROVAL = "approval"


@dataclass(frozen=True)
class WaitSpec:
    """What one parked step waits for."""

    step_key: str
    kind: str
    """`delay` (until `until`), `event` (`event_name`/`event_key`, at most until `until`) or
    `approval` (a person's decision, storage/approvals.py; at most until `until`)."""
    until: datetime | None
    event_name: str | None = None
    event_key: str | None = None
    on_timeout: str = "fail"
    message: str | None = None
    """An approval's question to the person."""
    on_reject: str | None = None
    """An approval's `onReject`: `fail` or `continue`."""

    def row(self, execution_id: str, stamp: datetime) -> dict[str, Any]:
        return {
            "execution_id": execution_id,
            "step_key": self.step_key,
            "kind": self.kind,
            "event_name": self.event_name,
            "event_key": self.event_key,
            "until": self.until,
            "on_timeout": self.on_timeout,
            "created_at": stamp,
            "matched_at": None,
            "event_id": None,
            "data": None,
            "message": self.message,
            "on_reject": self.on_reject,
        }


class Parked(StrEnum):
    WAITING = "waiting"
    """Parked: the lease is released, a timer or an event wakes it."""
    RESUME_NOW = "resume_now"
    """A wait was met already (an early event, a time passed): not parked, the execution
    keeps its lease and goes on."""
    CANCEL = "cancel"
    """A cancel was requested: not parked; the caller finishes it cancelled."""


async def _lock(conn: AsyncConnection, name: str, key: str) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
            {"k": f"event\x1f{name}\x1f{key}"},
        )


async def park(
    conn: AsyncConnection,
    execution_id: str,
    token: int,
    waits: list[WaitSpec],
    *,
    waited_ms: int,
    logs: list[dict[str, Any]],
    events_rows: list[dict[str, Any]],
) -> tuple[Parked, datetime | None]:
    """Park a running execution on `waits` (fenced by `token`; LeaseLost if it is not the
    owner's any more). Registers the waits (keeping those already registered), consumes stored
    events that meet them, and releases the lease. Returns what happened and the wake time."""
    stamp = now()
    fenced = await conn.execute(
        update(executions)
        .where(
            executions.c.id == execution_id,
            executions.c.fencing_token == token,
            executions.c.status == RUNNING,
        )
        .values(updated_at=stamp)
        .returning(executions.c.cancel_requested_at)
    )
    row = fenced.first()
    if row is None:
        raise LeaseLost()
    if row[0] is not None:
        return Parked.CANCEL, None
    keys = [spec.step_key for spec in waits]
    await conn.execute(
        delete(execution_waits).where(
            execution_waits.c.execution_id == execution_id, execution_waits.c.step_key.not_in(keys)
        )
    )
    held = {
        r["step_key"]: r
        for r in (
            await conn.execute(
                select(execution_waits).where(execution_waits.c.execution_id == execution_id)
            )
        ).mappings()
    }
    new_rows = [spec.row(execution_id, stamp) for spec in waits if spec.step_key not in held]
    if new_rows:
        await conn.execute(insert(execution_waits), new_rows)
    state: dict[str, dict[str, Any]] = {**{k: dict(v) for k, v in held.items()}}
    state.update({r["step_key"]: r for r in new_rows})
    pending_events = sorted(
        (r for r in state.values() if r["kind"] == EVENT and r["matched_at"] is None),
        key=lambda r: (r["event_name"], r["event_key"]),
    )
    for wait in pending_events:
        await _lock(conn, wait["event_name"], wait["event_key"])
        found = await _consume_stored(conn, wait["event_name"], wait["event_key"], stamp)
        if found is not None:
            event_id, data = found
            await conn.execute(
                update(execution_waits)
                .where(
                    execution_waits.c.execution_id == execution_id,
                    execution_waits.c.step_key == wait["step_key"],
                )
                .values(matched_at=stamp, event_id=event_id, data=data)
            )
            wait["matched_at"] = stamp
    met = any(
        r["matched_at"] is not None or (r["until"] is not None and r["until"] <= stamp)
        for r in state.values()
    )
    wake_at = min(
        (r["until"] for r in state.values() if r["until"] is not None and r["matched_at"] is None),
        default=None,
    )
    if not met:
        await _release(conn, execution_id, stamp, wake_at, waited_ms)
    if logs:
        await conn.execute(insert(execution_logs), logs)
    if events_rows:
        await conn.execute(insert(execution_events), events_rows)
    # Met already: the execution stays `running`, with its lease, and goes on at once.
    return (Parked.RESUME_NOW if met else Parked.WAITING), wake_at


async def _release(
    conn: AsyncConnection,
    execution_id: str,
    stamp: datetime,
    wake_at: datetime | None,
    waited_ms: int,
) -> None:
    await conn.execute(
        update(executions)
        .where(executions.c.id == execution_id)
        .values(
            status=WAITING,
            wake_at=wake_at,
            waiting_since=stamp,
            waited_ms=waited_ms,
            lease_owner=None,
            lease_expires_at=None,
            # A park is a hand-back, not a delivery that went wrong (MAX_DELIVERIES).
            handbacks=executions.c.handbacks + 1,
            updated_at=stamp,
        )
    )


async def _consume_stored(
    conn: AsyncConnection, name: str, key: str, stamp: datetime
) -> tuple[str, Any] | None:
    """The oldest stored, unconsumed, unexpired event (name, key), consumed now; None if none.
    The caller holds the (name, key) lock."""
    found = (
        await conn.execute(
            select(events.c.id, events.c.data)
            .where(
                events.c.name == name,
                events.c.key == key,
                events.c.consumed_at.is_(None),
                events.c.expires_at > stamp,
            )
            .order_by(events.c.created_at, events.c.id)
            .limit(1)
        )
    ).first()
    if found is None:
        return None
    done = await conn.execute(
        update(events)
        .where(events.c.id == found[0], events.c.consumed_at.is_(None))
        .values(consumed_at=stamp, matched=events.c.matched + 1)
    )
    return (str(found[0]), found[1]) if done.rowcount else None


@dataclass(frozen=True)
class PostedEvent:
    event_id: str
    resumed: list[str]
    """The executions this event woke (flipped to `pending`): the caller queues them."""


async def post_event(
    conn: AsyncConnection, name: str, key: str, data: Any, *, retention_ms: int
) -> PostedEvent:
    """Store an event and wake every execution waiting for (name, key), once each. An event
    that met no wait is kept `retention_ms` for a wait that registers later."""
    await _lock(conn, name, key)
    stamp = now()
    event_id = new_id()
    rows = await conn.execute(
        select(execution_waits.c.execution_id, execution_waits.c.step_key)
        .join(executions, executions.c.id == execution_waits.c.execution_id)
        .where(
            execution_waits.c.kind == EVENT,
            execution_waits.c.event_name == name,
            execution_waits.c.event_key == key,
            execution_waits.c.matched_at.is_(None),
            executions.c.status == WAITING,
        )
        .order_by(execution_waits.c.execution_id)
    )
    by_execution: dict[str, list[str]] = {}
    for execution_id, step_key in rows:
        by_execution.setdefault(execution_id, []).append(step_key)
    resumed = []
    for execution_id, step_keys in by_execution.items():
        if not await flip(conn, execution_id, stamp):
            continue  # woken meanwhile (its timer, a cancel): the event stays for its next wait
        await conn.execute(
            update(execution_waits)
            .where(
                execution_waits.c.execution_id == execution_id,
                execution_waits.c.step_key.in_(step_keys),
            )
            .values(matched_at=stamp, event_id=event_id, data=data)
        )
        resumed.append(execution_id)
    await conn.execute(
        insert(events),
        {
            "id": event_id,
            "name": name,
            "key": key,
            "data": data,
            "created_at": stamp,
            "expires_at": stamp + timedelta(milliseconds=retention_ms),
            "matched": len(resumed),
            "consumed_at": stamp if resumed else None,
        },
    )
    return PostedEvent(event_id, resumed)


async def flip(conn: AsyncConnection, execution_id: str, stamp: datetime) -> bool:
    """waiting -> pending, if it is still waiting: the single arbiter of every wake-up."""
    result = await conn.execute(
        update(executions)
        .where(executions.c.id == execution_id, executions.c.status == WAITING)
        .values(status=PENDING, wake_at=None, updated_at=stamp)
    )
    return bool(result.rowcount)


async def wake_if_due(conn: AsyncConnection, execution_id: str) -> bool | datetime | None:
    """The timer of one execution: True if it was due and this call woke it; its wake time if
    it is still waiting for later; None if it is not waiting (woken already, or finished)."""
    stamp = now()
    result = await conn.execute(
        update(executions)
        .where(
            executions.c.id == execution_id,
            executions.c.status == WAITING,
            executions.c.wake_at <= stamp,
        )
        .values(status=PENDING, wake_at=None, updated_at=stamp)
    )
    if result.rowcount:
        return True
    row = (
        await conn.execute(
            select(executions.c.status, executions.c.wake_at).where(executions.c.id == execution_id)
        )
    ).first()
    if row is None or row[0] != WAITING or row[1] is None:
        return None
    wake_at: datetime = row[1]
    return wake_at


async def due_waiting_ids(conn: AsyncConnection, *, limit: int) -> list[str]:
    query = (
        select(executions.c.id)
        .where(executions.c.status == WAITING, executions.c.wake_at <= now())
        .order_by(executions.c.wake_at)
        .limit(limit)
    )
    return list((await conn.execute(query)).scalars())


async def wake_many(conn: AsyncConnection, ids: list[str]) -> list[str]:
    """Wake the due ones among `ids`; the ids this call flipped (each is queued once)."""
    stamp = now()
    woken = []
    for execution_id in ids:
        result = await conn.execute(
            update(executions)
            .where(
                executions.c.id == execution_id,
                executions.c.status == WAITING,
                executions.c.wake_at <= stamp,
            )
            .values(status=PENDING, wake_at=None, updated_at=stamp)
        )
        if result.rowcount:
            woken.append(execution_id)
    return woken


async def list_waits(conn: AsyncConnection, execution_id: str) -> list[RowMapping]:
    query = (
        select(execution_waits)
        .where(execution_waits.c.execution_id == execution_id)
        .order_by(execution_waits.c.created_at, execution_waits.c.step_key)
    )
    return list((await conn.execute(query)).mappings())


async def cancel_waiting(conn: AsyncConnection, execution_id: str) -> list[dict[str, Any]]:
    """Cancel a `waiting` execution at once (nobody holds it): its running step rows end
    `failed`, its waits are removed, a `cancelled` event is stored (and its log line, once, with
    its event's seq). Returns the events as `execution_events` rows, the `log` one included (to
    publish once committed); [] if it was not waiting."""
    stamp = now()
    flipped = (
        await conn.execute(
            update(executions)
            .where(executions.c.id == execution_id, executions.c.status == WAITING)
            .values(
                status=ExecutionStatus.CANCELLED.value,
                cancel_requested_at=stamp,
                completed_at=stamp,
                error="Cancelled",
                wake_at=None,
                updated_at=stamp,
            )
            .returning(executions.c.started_at)
        )
    ).first()
    if flipped is None:
        return []
    started_at: datetime | None = flipped[0]
    duration = int((stamp - started_at).total_seconds() * 1000) if started_at else 0
    await conn.execute(
        update(executions).where(executions.c.id == execution_id).values(duration_ms=duration)
    )
    stopped = list(
        (
            await conn.execute(
                update(execution_steps)
                .where(
                    execution_steps.c.execution_id == execution_id,
                    execution_steps.c.status == StepStatus.RUNNING.value,
                )
                .values(
                    status=StepStatus.FAILED.value,
                    error="Cancelled",
                    completed_at=stamp,
                )
                .returning(execution_steps.c.step_id, execution_steps.c.step_key)
            )
        ).all()
    )
    await conn.execute(
        delete(execution_waits).where(execution_waits.c.execution_id == execution_id)
    )
    seq = await last_event_seq(conn, execution_id)
    message = f"Execution cancelled after {duration} ms (while waiting)"
    line = {
        "id": new_id(),
        "execution_id": execution_id,
        "level": "warn",
        "message": message,
        "metadata": {"durationMs": duration},
        "timestamp": stamp,
        "seq": seq + 1,
    }
    # The line is stored once, with its event's seq (its `log` event is replayed from it).
    await conn.execute(insert(execution_logs), line)
    made: list[tuple[str, dict[str, Any]]] = [
        (
            EventType.STEP_FAILED.value,
            {"stepId": step_id, "stepKey": step_key, "error": "Cancelled", "durationMs": 0},
        )
        for step_id, step_key in stopped
    ]
    made.append(
        (
            EventType.CANCELLED.value,
            {"durationMs": duration, "status": "cancelled", "error": "Cancelled"},
        )
    )
    rows = [
        {
            "execution_id": execution_id,
            "seq": seq + offset,
            "type": kind,
            "data": data,
            "timestamp": stamp,
        }
        for offset, (kind, data) in enumerate(made, start=2)
    ]
    await conn.execute(insert(execution_events), rows)
    return [log_event_row(line), *rows]


async def delete_expired_events(conn: AsyncConnection, *, limit: int) -> int:
    """Forget events past their retention (a small batch per call)."""
    ids = list(
        (
            await conn.execute(select(events.c.id).where(events.c.expires_at < now()).limit(limit))
        ).scalars()
    )
    if ids:
        await conn.execute(delete(events).where(events.c.id.in_(ids)))
    return len(ids)
