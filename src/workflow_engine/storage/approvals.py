"""A person's decision on an `approval` step (DESIGN.md section 14), in the database.

One conditional UPDATE decides: the approval's wait row takes the decision only while it has
none and has not timed out (`... WHERE matched_at IS NULL AND (until IS NULL OR until > now)`),
so of two decisions made at once exactly one is recorded; the other is refused (Conflict).
Then the execution is woken as any wait wakes it (`waiting -> pending`, storage/waits.py): only
the caller whose UPDATE flipped it queues it, so it resumes once.

The execution's row is locked first (FOR UPDATE on PostgreSQL; SQLite has one writer at a
time), as parking locks it first: a decision made while the execution parks is either seen by
the park (the execution goes on at once) or made after it (and wakes it). Never neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.domain.status import ExecutionStatus
from workflow_engine.errors import Conflict, NotFound
from workflow_engine.storage import waits
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.executions import now
from workflow_engine.storage.tables import execution_steps, execution_waits, executions


def iso(stamp: datetime) -> str:
    return stamp.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Decided:
    decision: dict[str, Any]
    """The step's output: `{"approved", "by", "comment", "at"}`."""
    at: datetime
    """When it was made (the audit log's entry has the same time)."""
    resumed: bool
    """This decision woke the execution (`waiting -> pending`): the caller queues it. False
    when it was not parked yet (it goes on when it parks) or was woken already."""


async def decide(
    conn: AsyncConnection,
    execution_id: str,
    step_key: str,
    *,
    approved: bool,
    by: str,
    comment: str | None,
) -> Decided:
    """Record a decision on the approval `step_key` of `execution_id` and wake the execution.
    NotFound: no such execution or step; Conflict: not an approval waiting for a decision."""
    locked = (
        await conn.execute(
            select(executions.c.status, executions.c.workflow_version_id)
            .where(executions.c.id == execution_id)
            .with_for_update()
        )
    ).first()
    if locked is None:
        raise NotFound(f"no execution {execution_id!r}")
    stamp = now()
    if ExecutionStatus(locked[0]).is_final:
        # A failed branch may have ended it while this approval was registered and undecided.
        raise await _refusal(conn, execution_id, step_key, locked[0], locked[1], stamp)
    decision = {"approved": approved, "by": by, "comment": comment, "at": iso(stamp)}
    made = await conn.execute(
        update(execution_waits)
        .where(
            execution_waits.c.execution_id == execution_id,
            execution_waits.c.step_key == step_key,
            execution_waits.c.kind == waits.APPROVAL,
            execution_waits.c.matched_at.is_(None),
            or_(execution_waits.c.until.is_(None), execution_waits.c.until > stamp),
        )
        .values(matched_at=stamp, data=decision)
    )
    if not made.rowcount:
        raise await _refusal(conn, execution_id, step_key, locked[0], locked[1], stamp)
    resumed = await waits.flip(conn, execution_id, stamp)
    return Decided(decision, stamp, resumed)


async def _refusal(
    conn: AsyncConnection,
    execution_id: str,
    step_key: str,
    status: str,
    version_id: str,
    stamp: datetime,
) -> NotFound | Conflict:
    """Why no decision can be taken on `step_key` now, as the error to answer with."""
    version = await wf_store.get_version(conn, version_id=version_id)
    types = {step["key"]: step["type"] for step in version["definition"].get("steps", [])}
    if step_key not in types:
        return NotFound(f"execution {execution_id!r} has no step {step_key!r}")
    if types[step_key] != "approval":
        return Conflict(
            f"step {step_key!r} is a {types[step_key]} step, not an approval: "
            "there is nothing to approve or reject"
        )
    wait = (
        (
            await conn.execute(
                select(execution_waits).where(
                    execution_waits.c.execution_id == execution_id,
                    execution_waits.c.step_key == step_key,
                )
            )
        )
        .mappings()
        .first()
    )
    if wait is not None and wait["matched_at"] is not None:
        return _already(step_key, wait["data"])
    if wait is not None and wait["until"] is not None and wait["until"] <= stamp:
        return Conflict(
            f"step {step_key!r} timed out waiting for a decision at {iso(wait['until'])}"
        )
    if ExecutionStatus(status).is_final:
        return Conflict(f"execution {execution_id!r} is {status}; it takes no decision now")
    step = (
        (
            await conn.execute(
                select(execution_steps.c.status, execution_steps.c.output, execution_steps.c.error)
                .where(
                    execution_steps.c.execution_id == execution_id,
                    execution_steps.c.step_key == step_key,
                )
                .order_by(execution_steps.c.started_at.desc())
                .limit(1)
            )
        )
        .mappings()
        .first()
    )
    if step is None or step["status"] in ("pending", "running"):
        return Conflict(
            f"step {step_key!r} is not waiting for a decision yet (the execution is {status})"
        )
    output = step["output"]
    if isinstance(output, dict) and "approved" in output:
        return _already(step_key, output)
    ended = f"{step['status']}: {step['error']}" if step["error"] else step["status"]
    return Conflict(f"step {step_key!r} has ended ({ended}); it takes no decision now")


def _already(step_key: str, decision: Any) -> Conflict:
    if not isinstance(decision, dict):
        return Conflict(f"step {step_key!r} has been decided already")
    verb = "approved" if decision.get("approved") else "rejected"
    return Conflict(
        f"step {step_key!r} was already {verb} by {decision.get('by')} at {decision.get('at')}"
    )
