"""Debounced triggers (DESIGN.md section 14, flow control): `"debounce": {"key": "...",
"periodMs": 5000}` on an `event` or `webhook` trigger. A burst of calls with the same rendered
key starts ONE execution, with the last call's input, `periodMs` after the last call.

Durable and exactly once: each call upserts the (trigger, key) row of `debounces` (latest input,
`fire_at` pushed back) in the caller's transaction. A delayed dispatch job per (trigger, key)
fires it: the job comes back while `fire_at` is still ahead (a later call pushed it), and the
reconciler's leader fires what is overdue (a job lost with Redis or with the embedded process).
Firing deletes the row only if it is due, and inserts the execution in that same transaction:
of several processes asking at once, only the one whose DELETE matched starts it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.domain.definition import Debounce
from workflow_engine.engine.flow_keys import render_key
from workflow_engine.errors import NotFound
from workflow_engine.queue.base import JobQueue
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import flow as flow_store
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.db import Database, Row

log = logging.getLogger(__name__)
DEBOUNCE_KEY = "debounce"
"""Dispatch job data of a debounce timer: `{"trigger": id, "key": rendered key}`."""
BATCH = 500


@dataclass(frozen=True)
class Held:
    """A call a debounced trigger kept (instead of starting an execution)."""

    trigger_id: str
    workflow_id: str
    key: str
    fire_at: datetime


def debounce_of(trigger: Row) -> Debounce | None:
    config = trigger["config"] or {}
    found = config.get("debounce")
    return Debounce.model_validate(found) if found else None


async def hold(conn: AsyncConnection, trigger: Row, input: Any) -> Held | None:
    """None if the trigger is not debounced; else the call is kept (its input is now the
    burst's), in the caller's transaction. The caller schedules its timer once committed."""
    debounce = debounce_of(trigger)
    if debounce is None:
        return None
    key = await render_key(debounce.key, input) if debounce.key else ""
    fire_at = await flow_store.hold(
        conn,
        trigger_id=trigger["id"],
        workflow_id=trigger["workflow_id"],
        key=key,
        input=input,
        period_ms=debounce.periodMs,
    )
    return Held(trigger["id"], trigger["workflow_id"], key, fire_at)


def timer_job_id(trigger_id: str, key: str) -> str:
    # The key is any text: hashed into a job id Redis and BullMQ take as is.
    digest = hashlib.sha256(f"{trigger_id}\x00{key}".encode()).hexdigest()[:40]
    return f"debounce-{digest}"


async def schedule(dispatch_queue: JobQueue, held: Held) -> None:
    """Queue the burst's timer (a no-op while one is held: it comes back if it is early). A
    queue that cannot be reached is left to the reconciler."""
    delay_ms = max(0, int((held.fire_at - ex_store.now()).total_seconds() * 1000) + 1)
    try:
        async with asyncio.timeout(3.0):
            await dispatch_queue.add(
                timer_job_id(held.trigger_id, held.key),
                {DEBOUNCE_KEY: {"trigger": held.trigger_id, "key": held.key}},
                delay_ms=delay_ms,
            )
    except Exception as exc:
        log.warning("debounce timer not queued (%s); the reconciler will fire it", exc)


async def fire(db: Database, trigger_id: str, key: str) -> str | datetime | None:
    """Start the burst's execution if it is due (the id of the `pending` execution, to queue);
    its fire time if a later call pushed it back; None if it was fired already (or its
    workflow can no longer run)."""
    async with db.write() as conn:
        taken = await flow_store.take_if_due(conn, trigger_id, key)
        if not isinstance(taken, flow_store.Burst):
            return taken
        try:
            workflow = await wf_store.get_workflow(conn, taken.workflow_id)
        except NotFound:
            return None
        if workflow["archived_at"] is not None or workflow["active_version_id"] is None:
            log.info("debounced call of trigger %s dropped: its workflow is archived", trigger_id)
            return None
        new = ex_store.NewExecution(
            workflow_id=taken.workflow_id,
            workflow_version_id=workflow["active_version_id"],
            input=taken.input,
            trigger_id=trigger_id,
        )
        execution_id = await ex_store.insert_execution(conn, new)
    log.info(
        "debounced trigger %s started execution %s (%d call(s))",
        trigger_id,
        execution_id,
        taken.calls,
    )
    return execution_id


async def fire_due(db: Database, dispatch_queue: JobQueue) -> list[str]:
    """Fire every overdue burst (the reconciler's pass); the executions started."""
    async with db.read() as conn:
        due = await flow_store.due(conn, limit=BATCH)
    started = []
    for trigger_id, key in due:
        fired = await fire(db, trigger_id, key)
        if isinstance(fired, str):
            started.append(fired)
    await asyncio.gather(*(dispatch_queue.add(execution_id) for execution_id in started))
    return started
