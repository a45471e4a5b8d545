"""Queries on executions, their step rows and logs. Each function takes a connection.

Writes made on behalf of a running execution are *fenced*: they first check that the caller still
holds the execution's current fencing token (and renew its lease in the same statement), so a
worker that lost its lease can write nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    Text,
    and_,
    bindparam,
    exists,
    func,
    literal,
    null,
    select,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import ReturningUpdate
from sqlalchemy.sql.selectable import Select

from workflow_engine.domain.priority import DEFAULT_PRIORITY
from workflow_engine.domain.status import EventType, ExecutionStatus
from workflow_engine.errors import NotFound
from workflow_engine.events.bus import log_event_data
from workflow_engine.ids import new_id
from workflow_engine.records import record
from workflow_engine.storage.db import translated_errors
from workflow_engine.storage.filters import one_of
from workflow_engine.storage.pagination import Cursor, keyset_before
from workflow_engine.storage.tables import (
    Json,
    UTCDateTime,
    execution_events,
    execution_logs,
    execution_steps,
    executions,
    workflows,
)

RUNNING = ExecutionStatus.RUNNING.value
PENDING = ExecutionStatus.PENDING.value


def now() -> datetime:
    return datetime.now(UTC)


# --- creation and reads --------------------------------------------------------------------------


@dataclass(frozen=True)
class NewExecution:
    workflow_id: str
    workflow_version_id: str
    input: Any
    trigger_id: str | None = None
    idempotency_key: str | None = None
    rerun_of_id: str | None = None
    parent_execution_id: str | None = None
    parent_step_key: str | None = None
    triggered_by: str | None = None
    """The name of the key that started it through the API (API_TOKEN for the bootstrap one)."""
    priority: int = DEFAULT_PRIORITY
    """1..10: of the executions waiting for a worker, the higher start first."""


async def insert_execution(conn: AsyncConnection, new: NewExecution) -> str:
    """Insert a `pending` execution (with an idempotency key: `insert_keyed_execution`)."""
    (execution_id,) = await insert_executions(conn, [new])
    return execution_id


async def insert_keyed_execution(conn: AsyncConnection, new: NewExecution) -> str:
    """Insert a `pending` execution with an idempotency key, in a savepoint: when another
    execution of the workflow took the key first, raises DuplicateKey and the transaction
    goes on without this INSERT."""
    row = execution_row(new)
    await insert_keyed_row(conn, row)
    return str(row["id"])


async def insert_keyed_row(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """`insert_keyed_execution` for a row made by `execution_row`."""
    with translated_errors():
        async with conn.begin_nested():
            await conn.execute(executions.insert(), [row])


def execution_row(new: NewExecution, stamp: datetime | None = None) -> dict[str, Any]:
    """The `executions` row of a new `pending` execution, with its id (`insert_executions`, or
    the executor's final write when it starts a failure alert)."""
    stamp = stamp or now()
    return {
        "id": new_id(),
        "workflow_id": new.workflow_id,
        "workflow_version_id": new.workflow_version_id,
        "trigger_id": new.trigger_id,
        "status": PENDING,
        "input": new.input,
        "retry_count": 0,
        "created_at": stamp,
        "updated_at": stamp,
        "idempotency_key": new.idempotency_key,
        "rerun_of_id": new.rerun_of_id,
        "parent_execution_id": new.parent_execution_id,
        "parent_step_key": new.parent_step_key,
        "triggered_by": new.triggered_by,
        "fencing_token": 0,
        "priority": new.priority,
    }


async def insert_executions(conn: AsyncConnection, news: list[NewExecution]) -> list[str]:
    """Insert `pending` executions in one statement; their ids, in order."""
    stamp = now()
    rows = [execution_row(new, stamp) for new in news]
    await conn.execute(executions.insert(), rows)
    return [row["id"] for row in rows]


async def find_by_idempotency_key(
    conn: AsyncConnection, workflow_id: str, key: str
) -> RowMapping | None:
    query = select(executions).where(
        executions.c.workflow_id == workflow_id, executions.c.idempotency_key == key
    )
    return (await conn.execute(query)).mappings().first()


async def get_execution(conn: AsyncConnection, execution_id: str) -> RowMapping:
    row = (
        (await conn.execute(select(executions).where(executions.c.id == execution_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"execution {execution_id!r} not found")
    return row


@dataclass(frozen=True)
class DispatchState:
    status: str
    archived: bool
    """Whether the execution has never been claimed and its workflow is archived (one that
    started, and waited since, goes on: see `archived_before_start`)."""
    workflow_version_id: str
    priority: int = DEFAULT_PRIORITY


@cache
def _dispatch_states_query(dialect: str) -> Select[Any]:
    # Built once per dialect: building a statement costs more than running it here.
    return select(
        executions.c.id,
        executions.c.status,
        _archived_before_start(),
        executions.c.workflow_version_id,
        executions.c.priority,
    ).where(one_of(executions.c.id, "ids", dialect))


async def dispatch_states(conn: AsyncConnection, ids: list[str]) -> dict[str, DispatchState]:
    """What the dispatcher checks, for several executions in one query (unknown ids are left
    out)."""
    rows = await conn.execute(_dispatch_states_query(conn.dialect.name), {"ids": ids})
    return {str(r[0]): DispatchState(str(r[1]), bool(r[2]), str(r[3]), int(r[4])) for r in rows}


async def list_executions(
    conn: AsyncConnection,
    *,
    workflow_id: str | None,
    status: str | None,
    limit: int,
    cursor: Cursor | None,
    created_after: datetime | None = None,
) -> list[RowMapping]:
    query = select(executions)
    if workflow_id:
        query = query.where(executions.c.workflow_id == workflow_id)
    if status:
        query = query.where(executions.c.status == status)
    if created_after is not None:
        query = query.where(executions.c.created_at >= created_after)
    if cursor:
        query = query.where(keyset_before(executions.c.created_at, executions.c.id, cursor))
    query = query.order_by(executions.c.created_at.desc(), executions.c.id.desc()).limit(limit)
    return list((await conn.execute(query)).mappings())


async def list_steps(conn: AsyncConnection, execution_id: str) -> list[RowMapping]:
    """The execution's step rows in the document's order; a map step's items follow it, in
    item order."""
    query = select(execution_steps).where(execution_steps.c.execution_id == execution_id)
    rows = list((await conn.execute(query)).mappings())
    rows.sort(key=_step_order)
    return rows


def _step_order(row: RowMapping) -> tuple[int, int]:
    key: str = row["step_key"]
    if key.endswith("]") and "[" in key:
        index = key[key.rindex("[") + 1 : -1]
        if index.isdigit():
            return row["position"], int(index)
    return row["position"], -1


async def list_children(conn: AsyncConnection, parent_id: str) -> list[RowMapping]:
    """The child executions a parent's `workflow` steps started, oldest first."""
    query = (
        select(executions)
        .where(executions.c.parent_execution_id == parent_id)
        .order_by(executions.c.created_at, executions.c.id)
    )
    return list((await conn.execute(query)).mappings())


async def ancestry_depth(conn: AsyncConnection, execution_id: str, *, limit: int) -> int:
    """How many parents the execution has (0 for a top-level one), counting at most `limit`."""
    depth = 0
    current: str | None = execution_id
    while depth < limit:
        parent = await conn.scalar(
            select(executions.c.parent_execution_id).where(executions.c.id == current)
        )
        if parent is None:
            break
        depth, current = depth + 1, parent
    return depth


async def keyed_in_lineage(
    conn: AsyncConnection, execution_id: str, key_prefix: str, *, limit: int
) -> bool:
    """Whether the execution, or one of its parents (at most `limit` levels up), has an
    idempotency key starting with `key_prefix`."""
    current: str | None = execution_id
    for _ in range(limit + 1):
        if current is None:
            break
        row = (
            await conn.execute(
                select(executions.c.idempotency_key, executions.c.parent_execution_id).where(
                    executions.c.id == current
                )
            )
        ).first()
        if row is None:
            break
        if row[0] is not None and str(row[0]).startswith(key_prefix):
            return True
        current = row[1]
    return False


async def insert_log(
    conn: AsyncConnection,
    execution_id: str,
    level: str,
    message: str,
    metadata: dict[str, Any] | None = None,
) -> None:
    """One log line on an execution, written outside its executor (which writes its own
    through the journal)."""
    await conn.execute(
        execution_logs.insert().values(
            id=new_id(),
            execution_id=execution_id,
            level=level,
            message=message,
            metadata=metadata,
            timestamp=now(),
        )
    )


async def active_descendants(conn: AsyncConnection, execution_id: str) -> list[str]:
    """The `pending`, `running` or `waiting` executions below this one (children, theirs...)."""
    found: list[str] = []
    frontier = [execution_id]
    for _ in range(64):  # nesting is capped far below this
        if not frontier:
            break
        rows = await conn.execute(
            select(executions.c.id, executions.c.status).where(
                executions.c.parent_execution_id.in_(frontier)
            )
        )
        frontier = []
        for child_id, status in rows:
            frontier.append(child_id)
            if status in (PENDING, RUNNING, ExecutionStatus.WAITING.value):
                found.append(child_id)
    return found


async def list_logs(conn: AsyncConnection, execution_id: str) -> list[RowMapping]:
    query = (
        select(execution_logs)
        .where(execution_logs.c.execution_id == execution_id)
        .order_by(execution_logs.c.timestamp, execution_logs.c.id)
    )
    return list((await conn.execute(query)).mappings())


# --- claiming and fencing ------------------------------------------------------------------------


@record
class Claim:
    """A claimed execution, with what its executor needs to start (no second read)."""

    execution_id: str
    token: int
    workflow_id: str
    workflow_version_id: str
    input: Any
    started_at: datetime
    rerun_of_id: str | None
    handbacks: int = 0
    waited_ms: int = 0
    """How long the execution waited (`waiting`) before its last park."""
    waiting_since: datetime | None = None
    """When it last parked (None: never)."""
    claimed_at: datetime | None = None

    def waited_ms_now(self) -> int:
        """Time spent waiting until this claim (its last wait counted up to the claim)."""
        if self.waiting_since is None or self.claimed_at is None:
            return self.waited_ms
        last = int((self.claimed_at - self.waiting_since).total_seconds() * 1000)
        return self.waited_ms + max(0, last)

    @property
    def first_start(self) -> bool:
        return self.token == 1

    @property
    def deliveries(self) -> int:
        """Claims that were not graceful hand-backs (crashes, stalls, this one)."""
        return self.token - self.handbacks


async def claim(
    conn: AsyncConnection, execution_id: str, *, owner: str, lease_ms: int
) -> Claim | None:
    """Take the execution: `pending`, or `running` with an expired lease. None if not claimable;
    that includes a never-claimed one whose workflow is archived (see archived_before_start).

    Bumping the fencing token makes every write of a previous owner fail.
    """
    claims = await claim_many(conn, [execution_id], owner=owner, lease_ms=lease_ms)
    return claims.get(execution_id)


@cache
def _claim_statement(dialect: str) -> ReturningUpdate[Any]:
    # Built once per dialect: building a statement costs more than running it here.
    stamp = bindparam("stamp", type_=UTCDateTime())
    return (
        update(executions)
        .where(
            one_of(executions.c.id, "ids", dialect),
            executions.c.cancel_requested_at.is_(None),
            (executions.c.status == PENDING)
            | and_(executions.c.status == RUNNING, executions.c.lease_expires_at < stamp),
            ~_archived_before_start(),
        )
        .values(
            status=RUNNING,
            fencing_token=executions.c.fencing_token + 1,
            lease_owner=bindparam("owner", type_=String()),
            lease_expires_at=bindparam("lease_until", type_=UTCDateTime()),
            started_at=func.coalesce(executions.c.started_at, stamp),
            updated_at=stamp,
        )
        .returning(
            executions.c.id,
            executions.c.fencing_token,
            executions.c.workflow_id,
            executions.c.workflow_version_id,
            executions.c.input,
            executions.c.started_at,
            executions.c.rerun_of_id,
            executions.c.handbacks,
            executions.c.waited_ms,
            executions.c.waiting_since,
        )
    )


def _archived_before_start() -> Any:
    """Never claimed, and its workflow archived: the claim leaves such an execution, the
    dispatcher's read and the runner fail it; one that started goes on to its end."""
    return and_(
        executions.c.fencing_token == 0,
        exists().where(
            workflows.c.id == executions.c.workflow_id, workflows.c.archived_at.is_not(None)
        ),
    )


@cache
def _archived_before_start_query() -> Select[Any]:
    return select(executions.c.workflow_version_id).where(
        executions.c.id == bindparam("id", type_=String()),
        executions.c.status == PENDING,
        _archived_before_start(),
    )


async def archived_before_start(conn: AsyncConnection, execution_id: str) -> str | None:
    """The version of a `pending` execution that was never claimed and whose workflow has been
    archived (the claim leaves it, the runner fails it); None for any other."""
    found = await conn.scalar(_archived_before_start_query(), {"id": execution_id})
    return None if found is None else str(found)


async def claim_many(
    conn: AsyncConnection, ids: list[str], *, owner: str, lease_ms: int
) -> dict[str, Claim]:
    """`claim` for several executions in one statement; the ones not claimable are left out."""
    stamp = now()
    params = {
        "ids": ids,
        "stamp": stamp,
        "owner": owner,
        "lease_until": stamp + timedelta(milliseconds=lease_ms),
    }
    rows = await conn.execute(_claim_statement(conn.dialect.name), params)
    return {
        row.id: Claim(
            execution_id=row.id,
            token=int(row.fencing_token),
            workflow_id=row.workflow_id,
            workflow_version_id=row.workflow_version_id,
            input=row.input,
            started_at=row.started_at,
            rerun_of_id=row.rerun_of_id,
            handbacks=int(row.handbacks),
            waited_ms=int(row.waited_ms or 0),
            waiting_since=row.waiting_since,
            claimed_at=stamp,
        )
        for row in rows
    }


async def release_lease(conn: AsyncConnection, execution_id: str, token: int) -> None:
    """Give a running execution up (its worker is stopping): its lease ends now, so the
    reconciler hands it to another worker on its next pass. A hand-back is not a delivery
    that went wrong: it does not count toward MAX_DELIVERIES."""
    await conn.execute(
        update(executions)
        .where(
            executions.c.id == execution_id,
            executions.c.fencing_token == token,
            executions.c.status == RUNNING,
        )
        .values(lease_expires_at=now(), lease_owner=None, handbacks=executions.c.handbacks + 1)
    )


async def fail_unclaimable(conn: AsyncConnection, execution_id: str, error: str) -> bool:
    """Fail an execution outside any lease (e.g. its workflow vanished, or it kept crashing)."""
    stamp = now()
    result = await conn.execute(
        update(executions)
        .where(executions.c.id == execution_id, executions.c.status.in_([PENDING, RUNNING]))
        .values(
            status=ExecutionStatus.FAILED.value,
            error=error,
            completed_at=stamp,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=stamp,
        )
    )
    return bool(result.rowcount)


# --- cancel --------------------------------------------------------------------------------------


async def execution_status(conn: AsyncConnection, execution_id: str) -> str:
    status = await conn.scalar(select(executions.c.status).where(executions.c.id == execution_id))
    if status is None:
        raise NotFound(f"execution {execution_id!r} not found")
    return str(status)


async def request_cancel(conn: AsyncConnection, execution_id: str) -> str:
    """Cancel: a `pending` execution becomes `cancelled` at once; a `running` one is flagged for
    its worker. Returns the status after the call (a `waiting` one: see waits.cancel_waiting,
    called next in the same transaction; a park racing this sees the flag and cancels)."""
    stamp = now()
    await conn.execute(
        update(executions)
        .where(executions.c.id == execution_id, executions.c.status == PENDING)
        .values(
            status=ExecutionStatus.CANCELLED.value,
            cancel_requested_at=stamp,
            completed_at=stamp,
            error="Cancelled before it started",
            updated_at=stamp,
        )
    )
    await conn.execute(
        update(executions)
        .where(
            executions.c.id == execution_id,
            executions.c.status == RUNNING,
            executions.c.cancel_requested_at.is_(None),
        )
        .values(cancel_requested_at=stamp, updated_at=stamp)
    )
    status = await conn.scalar(select(executions.c.status).where(executions.c.id == execution_id))
    if status is None:
        raise NotFound(f"execution {execution_id!r} not found")
    return str(status)


async def cancel_unowned(conn: AsyncConnection, execution_id: str) -> bool:
    """Finish a `running` execution whose cancel was requested and whose lease has expired
    (no worker is left to do it)."""
    stamp = now()
    result = await conn.execute(
        update(executions)
        .where(
            executions.c.id == execution_id,
            executions.c.status == RUNNING,
            executions.c.cancel_requested_at.is_not(None),
            executions.c.lease_expires_at < stamp,
        )
        .values(
            status=ExecutionStatus.CANCELLED.value,
            error="Cancelled",
            completed_at=stamp,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=stamp,
        )
    )
    return bool(result.rowcount)


# --- step rows and logs --------------------------------------------------------------------------


async def copy_finished_steps(conn: AsyncConnection, source_id: str, target_id: str) -> None:
    """For a re-run: carry over the source's completed and skipped step rows (map items
    included), so that only the failed and the not-started steps run."""
    rows = await conn.execute(
        select(execution_steps).where(
            execution_steps.c.execution_id == source_id,
            execution_steps.c.status.in_(["completed", "skipped"]),
        )
    )
    copies = [{**dict(row), "id": new_id(), "execution_id": target_id} for row in rows.mappings()]
    if copies:
        await conn.execute(execution_steps.insert(), copies)


async def last_event_seq(conn: AsyncConnection, execution_id: str) -> int:
    """The highest event seq stored for the execution (0 if none): a redelivery goes on from it.
    Its log lines count: each is stored once, in execution_logs, with its event's seq."""
    row = (
        await conn.execute(
            select(
                select(func.max(execution_events.c.seq))
                .where(execution_events.c.execution_id == execution_id)
                .scalar_subquery(),
                select(func.max(execution_logs.c.seq))
                .where(execution_logs.c.execution_id == execution_id)
                .scalar_subquery(),
            )
        )
    ).one()
    return max(int(row[0] or 0), int(row[1] or 0))


@cache
def _event_history_query() -> Select[Any]:
    # Both tables in ONE statement, so one snapshot: two reads could see a write that commits
    # between them in one table only, and a subscriber would skip the events it missed.
    execution_id = bindparam("execution_id", type_=String())
    after = bindparam("after", type_=Integer())
    events = select(
        execution_events.c.seq,
        execution_events.c.type,
        execution_events.c.data,
        execution_events.c.timestamp,
        type_coerce(null(), String()).label("id"),
        type_coerce(null(), String()).label("level"),
        type_coerce(null(), Text()).label("message"),
        type_coerce(null(), Json).label("metadata"),
    ).where(execution_events.c.execution_id == execution_id, execution_events.c.seq > after)
    lines = select(
        execution_logs.c.seq,
        literal(EventType.LOG.value, String()),
        null(),
        execution_logs.c.timestamp,
        execution_logs.c.id,
        execution_logs.c.level,
        execution_logs.c.message,
        execution_logs.c.metadata,
    ).where(execution_logs.c.execution_id == execution_id, execution_logs.c.seq > after)
    history = union_all(events, lines).subquery()
    return select(history).order_by(history.c.seq).limit(bindparam("limit", type_=Integer()))


async def list_events(
    conn: AsyncConnection, execution_id: str, *, after_seq: int = 0, limit: int = 10_000
) -> list[dict[str, Any]]:
    """Stored events in seq order, as `execution_events` rows: what a late or reconnecting
    subscriber missed. `log` events are read from their lines in execution_logs (stored once,
    there, with their seq); the lines written before migration 0015 have their events in
    execution_events and no seq."""
    rows = await conn.execute(
        _event_history_query(),
        {"execution_id": execution_id, "after": after_seq, "limit": limit},
    )
    found = []
    for row in rows.mappings():
        if row["id"] is not None:  # a log line
            found.append(log_event_row({**row, "execution_id": execution_id}))
        else:
            found.append(
                {
                    "execution_id": execution_id,
                    "seq": row["seq"],
                    "type": row["type"],
                    "data": row["data"],
                    "timestamp": row["timestamp"],
                }
            )
    return found


def log_event_row(line: Any) -> dict[str, Any]:
    """The `log` event of an execution_logs row that has a seq, as an `execution_events` row."""
    return {
        "execution_id": line["execution_id"],
        "seq": line["seq"],
        "type": EventType.LOG.value,
        "data": log_event_data(line),
        "timestamp": line["timestamp"],
    }


# --- reconciliation ------------------------------------------------------------------------------


async def stale_pending_ids(
    conn: AsyncConnection, *, older_than: datetime, limit: int
) -> list[tuple[str, int]]:
    """Pending executions not touched since `older_than`, with their priorities."""
    query = (
        select(executions.c.id, executions.c.priority)
        .where(executions.c.status == PENDING, executions.c.updated_at < older_than)
        .order_by(executions.c.created_at)
        .limit(limit)
    )
    return [(str(r[0]), int(r[1])) for r in await conn.execute(query)]


async def expired_running_ids(conn: AsyncConnection, *, limit: int) -> list[str]:
    query = (
        select(executions.c.id)
        .where(executions.c.status == RUNNING, executions.c.lease_expires_at < now())
        .order_by(executions.c.lease_expires_at)
        .limit(limit)
    )
    return list((await conn.execute(query)).scalars())


async def touch(conn: AsyncConnection, execution_ids: list[str]) -> None:
    """Mark pending executions as just handled (so the reconciler leaves them alone a while).

    Only rows still `pending` are touched: a row claimed meanwhile belongs to a worker, whose
    batched writes must not wait on (or deadlock with) this statement.
    """
    await conn.execute(
        update(executions)
        .where(executions.c.id.in_(execution_ids), executions.c.status == PENDING)
        .values(updated_at=now())
    )
