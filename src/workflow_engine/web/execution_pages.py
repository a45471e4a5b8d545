"""`/monitoring` (every execution, filters, keyset paging, queue counts) and `/executions/{id}`
(the steps on a time axis, map items, links between parent and child executions, logs, cancel
and re-run)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from workflow_engine.api.deps import EngineDep
from workflow_engine.domain.access import Permission, Principal
from workflow_engine.domain.audit import Action, Target
from workflow_engine.domain.status import ExecutionStatus
from workflow_engine.errors import NotFound
from workflow_engine.storage import audit, usage
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import waits as wait_store
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.db import Connection, Row
from workflow_engine.storage.pagination import Cursor
from workflow_engine.web import timeline
from workflow_engine.web.render import STATUSES, forbidden, page, require_login

router = APIRouter(include_in_schema=False)
Login = Annotated[Principal, Depends(require_login)]
PAGE_SIZE = 50
PERIODS = {
    "15m": ("Last 15 minutes", timedelta(minutes=15)),
    "1h": ("Last hour", timedelta(hours=1)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "": ("Any time", None),
}


@router.get("/monitoring")
async def monitoring_page(
    request: Request,
    engine: EngineDep,
    who: Login,
    workflow: str = "",
    status: str = "",
    period: str = "",
    cursor: str = "",
) -> Response:
    if not who.can(Permission.READ):  # a trigger key: its page is the list of its workflows
        return RedirectResponse("/workflows", status_code=303)
    status = status if status in STATUSES else ""
    period = period if period in PERIODS else ""
    delta = PERIODS[period][1]
    since = datetime.now(UTC) - delta if delta else None
    try:
        after = Cursor.decode(cursor) if cursor else None
    except ValueError:
        after = None
    async with engine.db.read() as conn:
        choices = await wf_store.workflow_names(conn)
        workflow_id: str | None = None
        if workflow:
            try:
                workflow_id = str((await wf_store.get_workflow(conn, workflow))["id"])
            except NotFound:
                workflow_id = "-"  # matches nothing: the filter names an unknown workflow
        # One extra row tells whether there is a next page without a COUNT over the table.
        rows = (
            []
            if workflow_id == "-"
            else await ex_store.list_executions(
                conn,
                workflow_id=workflow_id,
                status=status or None,
                limit=PAGE_SIZE + 1,
                cursor=after,
                created_after=since,
            )
        )
        # Only archived workflows are missing from `choices` (none: no query).
        unnamed = {r["workflow_id"] for r in rows} - choices.keys()
        names = {**choices, **await wf_store.workflow_names(conn, unnamed)}
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    filters = {"workflow": workflow, "status": status, "period": period}
    next_cursor = Cursor.after_row(rows[-1]).encode() if more else None
    return page(
        request,
        "monitoring.html",
        executions=rows,
        names=names,
        choices=choices,
        filters=filters,
        filtered=any(filters.values()),
        workflow_id=workflow_id,
        periods=PERIODS,
        next_cursor=next_cursor,
        paged=after is not None,
        queues=await _queue_counts(engine),
        nav="monitoring",
    )


async def _queue_counts(engine: Any) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for queue in (engine.dispatch_queue, engine.execution_queue):
        try:
            counts[queue.name] = await queue.counts()
        except Exception:  # Redis down: the page still shows the executions
            counts[queue.name] = {}
    return counts


@router.get("/executions/{execution_id}")
async def execution_page(
    request: Request, engine: EngineDep, execution_id: str, who: Login
) -> Response:
    if not who.can(Permission.READ):
        return forbidden(request, who)
    async with engine.db.read() as conn:
        try:
            # The seq first: events after it are replayed by the page, so nothing falls between.
            last_seq = await ex_store.last_event_seq(conn, execution_id)
            row = await ex_store.get_execution(conn, execution_id)
        except NotFound:
            return page(
                request, "not_found.html", status_code=404, what="execution", id=execution_id
            )
        steps = await ex_store.list_steps(conn, execution_id)
        children = await ex_store.list_children(conn, execution_id)
        logs = await ex_store.list_logs(conn, execution_id)
        version = await wf_store.get_version(conn, version_id=row["workflow_version_id"])
        parent = await _parent(conn, row["parent_execution_id"])
        wanted = {row["workflow_id"], *(c["workflow_id"] for c in children)}
        if parent is not None:
            wanted.add(parent["workflow_id"])
        names = await wf_store.workflow_names(conn, wanted)
        entries = await audit.entries_of(conn, Target.EXECUTION, execution_id)
        spent = await usage.for_execution(conn, execution_id)
        waits = []
        if row["status"] == ExecutionStatus.WAITING:
            waits = await wait_store.list_waits(conn, execution_id)
    rerun_created_at = row["created_at"] if row["rerun_of_id"] else None
    return page(
        request,
        "execution.html",
        execution=row,
        workflow_name=names.get(row["workflow_id"], row["workflow_id"]),
        names=names,
        parent=parent,
        version=version,
        timeline=timeline.build(
            version["definition"], steps, children, rerun_created_at=rerun_created_at
        ),
        logs=logs,
        audit=entries,
        decisions=decisions(entries),
        waits=waits,
        usage=spent,
        last_seq=last_seq,
        server_now=datetime.now(UTC),
        nav="monitoring",
    )


async def _parent(conn: Connection, parent_id: str | None) -> Any:
    """The execution whose `workflow` step started this one, if it still exists."""
    if parent_id is None:
        return None
    try:
        return await ex_store.get_execution(conn, parent_id)
    except NotFound:
        return None


def decisions(entries: list[Row]) -> dict[str, dict[str, Any]]:
    """The decisions on the execution's approval steps, by step key, from its audit entries
    (one per step: a second decision is refused)."""
    found = {}
    for entry in entries:
        if entry["action"] in (Action.STEP_APPROVED, Action.STEP_REJECTED):
            detail = entry["detail"] or {}
            found[str(detail.get("stepKey"))] = {
                "approved": entry["action"] == Action.STEP_APPROVED,
                "by": entry["actor"],
                "at": entry["at"],
                "comment": detail.get("comment"),
            }
    return found
