"""Executions: list, detail with steps and logs, cancel, re-run."""

from __future__ import annotations

from typing import Any

from workflow_engine.api import serialize
from workflow_engine.api.deps import (
    CursorParam,
    EngineDep,
    ExecutionId,
    Limit,
    WorkflowFilter,
    parse_cursor,
)
from workflow_engine.api.errors import responses
from workflow_engine.api.permissions import OPERATE, READ, Caller
from workflow_engine.api.routes import api_router
from workflow_engine.api.schemas import (
    CancelResult,
    ExecutionDetail,
    ExecutionList,
    RerunStarted,
)
from workflow_engine.domain.audit import Target
from workflow_engine.domain.status import ExecutionStatus
from workflow_engine.errors import NotFound
from workflow_engine.storage import audit, usage
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import waits as wait_store
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.pagination import Cursor

router = api_router("executions")


@router.get(
    "/executions", response_model=ExecutionList, responses=responses(400), dependencies=[READ]
)
async def list_executions(
    engine: EngineDep,
    workflowId: WorkflowFilter = None,
    status: ExecutionStatus | None = None,
    limit: Limit = 50,
    cursor: CursorParam = None,
) -> Any:
    """Newest first, paged by `nextCursor`."""
    async with engine.db.read() as conn:
        workflow_id = None
        if workflowId:
            try:
                workflow_id = (await wf_store.get_workflow(conn, workflowId))["id"]
            except NotFound:
                return {"executions": [], "nextCursor": None}
        rows = await ex_store.list_executions(
            conn,
            workflow_id=workflow_id,
            status=status.value if status else None,
            limit=limit,
            cursor=parse_cursor(cursor),
        )
    next_cursor = Cursor.after_row(rows[-1]).encode() if len(rows) == limit else None
    return {"executions": [serialize.execution(r) for r in rows], "nextCursor": next_cursor}


@router.get(
    "/executions/{execution_id}",
    response_model=ExecutionDetail,
    responses=responses(404),
    dependencies=[READ],
)
async def get_execution(engine: EngineDep, execution_id: ExecutionId) -> Any:
    """The execution with its steps, logs, child executions and `audit` (who cancelled or
    re-ran it; `triggeredBy` names the key that started it)."""
    async with engine.db.read() as conn:
        row = await ex_store.get_execution(conn, execution_id)
        steps = await ex_store.list_steps(conn, execution_id)
        logs = await ex_store.list_logs(conn, execution_id)
        children = await ex_store.list_children(conn, execution_id)
        entries = await audit.entries_of(conn, Target.EXECUTION, execution_id)
        spent = await usage.for_execution(conn, execution_id)
        waits = []
        if row["status"] == ExecutionStatus.WAITING:
            waits = await wait_store.list_waits(conn, execution_id)
    return {
        **serialize.execution(row),
        "usage": spent.as_dict(),
        "steps": [serialize.step(s) for s in steps],
        "waits": [serialize.wait(w) for w in waits],
        "logs": [serialize.log(entry) for entry in logs],
        "children": [serialize.execution(child) for child in children],
        "audit": [serialize.audit(entry) for entry in entries],
    }


@router.post(
    "/executions/{execution_id}/cancel",
    status_code=202,
    response_model=CancelResult,
    responses=responses(403, 404, 409),
    dependencies=[OPERATE],
)
async def cancel_execution(engine: EngineDep, execution_id: ExecutionId, caller: Caller) -> Any:
    """Pending or waiting: cancelled at once. Running: its worker stops it (the status
    follows). Completed or failed: 409."""
    status = await engine.service.cancel(execution_id, caller.actor)
    return {"executionId": execution_id, "status": status}


@router.post(
    "/executions/{execution_id}/rerun",
    status_code=202,
    response_model=RerunStarted,
    responses=responses(403, 404, 409),
    dependencies=[OPERATE],
)
async def rerun_execution(engine: EngineDep, execution_id: ExecutionId, caller: Caller) -> Any:
    """A new execution that carries over the completed steps and starts at the failed one."""
    new_id = await engine.service.rerun(execution_id, caller.actor)
    return {"executionId": new_id, "status": ExecutionStatus.PENDING.value, "rerunOf": execution_id}
