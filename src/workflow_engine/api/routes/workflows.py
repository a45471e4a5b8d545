"""Workflows, their versions and triggers; and starting an execution."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Header, Path, Response
from fastapi.responses import JSONResponse

from workflow_engine.api import serialize
from workflow_engine.api.deps import (
    CursorParam,
    EngineDep,
    Limit,
    TriggerId,
    WorkflowRef,
    parse_cursor,
)
from workflow_engine.api.errors import WRITE, responses
from workflow_engine.api.permissions import ADMIN, EXECUTE, OPERATE, READ, Caller
from workflow_engine.api.routes import api_router
from workflow_engine.api.schemas import (
    EXECUTE_EXAMPLE,
    TRIGGER_EXAMPLE,
    WORKFLOW_EXAMPLE,
    ExecuteRequest,
    ExecutionStarted,
    Trigger,
    TriggerList,
    VersionList,
    Workflow,
    WorkflowList,
    WorkflowUsage,
    WorkflowVersion,
    examples,
)
from workflow_engine.domain.audit import Target
from workflow_engine.domain.definition import TriggerDefinition, WorkflowDefinition
from workflow_engine.engine.debounce import Held
from workflow_engine.storage import audit, usage
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.pagination import Cursor

router = api_router("workflows")
NOT_FOUND = responses(404)
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Repeating a key returns the execution it started (Idempotent-Replayed: "
        "true) instead of starting another",
    ),
]
# Optional: no body (or `null`) is `{"input": {}}`.
ExecuteBody = Annotated[
    ExecuteRequest, Body(openapi_examples=examples("Run with an input", EXECUTE_EXAMPLE))
]
Document = Annotated[
    WorkflowDefinition,
    Body(openapi_examples=examples("The document of DESIGN.md section 4", WORKFLOW_EXAMPLE)),
]
TriggerDocument = Annotated[
    TriggerDefinition,
    Body(openapi_examples=examples("Weekdays at 9 in Paris", TRIGGER_EXAMPLE)),
]


async def _workflow_body(
    engine: EngineDep, id_or_name: str, *, with_audit: bool = False
) -> dict[str, Any]:
    async with engine.db.read() as conn:
        row = await wf_store.get_workflow(conn, id_or_name)
        version = (
            await wf_store.get_version(conn, version_id=row["active_version_id"])
            if row["active_version_id"]
            else None
        )
        triggers = await wf_store.list_triggers(conn, row["id"])
        entries = await audit.entries_of(conn, Target.WORKFLOW, row["id"]) if with_audit else None
    body = serialize.workflow(row, version=version, triggers=triggers)
    if entries is not None:
        body["audit"] = [serialize.audit(entry) for entry in entries]
    return body


# First, so that it is matched first: every execution started over the API comes this way.


@router.post(
    "/workflows/{workflow_id}/execute",
    status_code=202,
    response_model=None,  # documented below, not re-validated: the answer is made right here
    responses={202: {"model": ExecutionStarted}, **WRITE, **responses(404, 409)},
    dependencies=[EXECUTE],
)
async def execute(
    engine: EngineDep,
    workflow_id: WorkflowRef,
    response: Response,
    caller: Caller,
    body: ExecuteBody = ExecuteRequest(),
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Queue an execution of the workflow's active version; answers at once with its id.
    A `trigger` key may execute only the workflows listed on it (403 for any other)."""
    started = await engine.service.execute(
        workflow_id,
        body.input if body.input is not None else {},
        idempotency_key=idempotency_key,
        triggered_by=caller.name,
        priority=body.priority,
    )
    if not started.created:
        response.headers["Idempotent-Replayed"] = "true"
    return {"executionId": started.execution_id, "status": started.status}


# `response_model_exclude_unset`: keys serialize.py leaves out (a workflow's `version` before
# it has one, a trigger's settings its type has not) stay out.


@router.post(
    "/workflows",
    status_code=201,
    response_model=Workflow,
    response_model_exclude_unset=True,
    responses={**WRITE, **responses(409)},
    dependencies=[ADMIN],
)
async def create_workflow(engine: EngineDep, document: Document, caller: Caller) -> Any:
    """Create a workflow from a whole document (its version 1)."""
    workflow_id = await engine.service.create_workflow(document, caller.actor)
    return await _workflow_body(engine, workflow_id)


@router.get(
    "/workflows",
    response_model=WorkflowList,
    response_model_exclude_unset=True,
    responses=responses(400),
    dependencies=[READ],
)
async def list_workflows(
    engine: EngineDep,
    limit: Limit = 50,
    cursor: CursorParam = None,
    includeArchived: bool = False,
) -> Any:
    """Newest first, paged by `nextCursor`."""
    async with engine.db.read() as conn:
        rows = await wf_store.list_workflows(
            conn, limit=limit, cursor=parse_cursor(cursor), include_archived=includeArchived
        )
    next_cursor = Cursor.after_row(rows[-1]).encode() if len(rows) == limit else None
    return {"workflows": [serialize.workflow(r) for r in rows], "nextCursor": next_cursor}


@router.get(
    "/workflows/{workflow_id}",
    response_model=Workflow,
    response_model_exclude_unset=True,
    responses=NOT_FOUND,
    dependencies=[READ],
)
async def get_workflow(engine: EngineDep, workflow_id: WorkflowRef) -> Any:
    """A workflow by id or name, with its active definition, triggers and `audit` (who
    created, saved or archived it, and changed its triggers; oldest first)."""
    return await _workflow_body(engine, workflow_id, with_audit=True)


@router.put(
    "/workflows/{workflow_id}",
    response_model=Workflow,
    response_model_exclude_unset=True,
    responses={**WRITE, **responses(404, 409)},
    dependencies=[ADMIN],
)
async def update_workflow(
    engine: EngineDep, workflow_id: WorkflowRef, document: Document, caller: Caller
) -> Any:
    """Save a whole document as a new version; running executions keep theirs."""
    saved_id = await engine.service.update_workflow(workflow_id, document, caller.actor)
    return await _workflow_body(engine, saved_id)


@router.delete(
    "/workflows/{workflow_id}",
    response_model=Workflow,
    response_model_exclude_unset=True,
    responses=responses(403, 404),
    dependencies=[ADMIN],
)
async def archive_workflow(engine: EngineDep, workflow_id: WorkflowRef, caller: Caller) -> Any:
    """Archive: no new executions, schedules off; history is kept."""
    archived_id = await engine.service.archive_workflow(workflow_id, caller.actor)
    return await _workflow_body(engine, archived_id)


@router.get(
    "/workflows/{workflow_id}/usage",
    response_model=WorkflowUsage,
    responses=NOT_FOUND,
    dependencies=[READ],
)
async def workflow_usage(engine: EngineDep, workflow_id: WorkflowRef) -> Any:
    """Token usage of the workflow's llm steps, summed over its executions."""
    async with engine.db.read() as conn:
        row = await wf_store.get_workflow(conn, workflow_id)
        spent = await usage.for_workflow(conn, row["id"])
    return {"workflowId": row["id"], **spent.as_dict()}


@router.get(
    "/workflows/{workflow_id}/versions",
    response_model=VersionList,
    responses=NOT_FOUND,
    dependencies=[READ],
)
async def list_versions(engine: EngineDep, workflow_id: WorkflowRef) -> Any:
    """Every saved version, oldest first."""
    async with engine.db.read() as conn:
        row = await wf_store.get_workflow(conn, workflow_id)
        versions = await wf_store.list_versions(conn, row["id"])
    return {"versions": [serialize.version(v) for v in versions]}


@router.get(
    "/workflows/{workflow_id}/versions/{number}",
    response_model=WorkflowVersion,
    responses=NOT_FOUND,
    dependencies=[READ],
)
async def get_version(
    engine: EngineDep, workflow_id: WorkflowRef, number: Annotated[int, Path(ge=1, le=2**31 - 1)]
) -> Any:
    async with engine.db.read() as conn:
        row = await wf_store.get_workflow(conn, workflow_id)
        version = await wf_store.get_version(conn, workflow_id=row["id"], number=number)
    return serialize.version(version)


@router.get(
    "/workflows/{workflow_id}/triggers",
    response_model=TriggerList,
    response_model_exclude_unset=True,
    responses=NOT_FOUND,
    dependencies=[READ],
)
async def list_triggers(engine: EngineDep, workflow_id: WorkflowRef) -> Any:
    async with engine.db.read() as conn:
        row = await wf_store.get_workflow(conn, workflow_id)
        triggers = await wf_store.list_triggers(conn, row["id"])
    return {"triggers": [serialize.trigger(t) for t in triggers]}


@router.post(
    "/workflows/{workflow_id}/triggers",
    status_code=201,
    response_model=Trigger,
    response_model_exclude_unset=True,
    responses={**WRITE, **responses(404, 409)},
    dependencies=[ADMIN],
)
async def add_trigger(
    engine: EngineDep, workflow_id: WorkflowRef, document: TriggerDocument, caller: Caller
) -> Any:
    trigger_id = await engine.service.add_trigger(workflow_id, document, caller.actor)
    async with engine.db.read() as conn:
        return serialize.trigger(await wf_store.get_trigger(conn, trigger_id))


@router.put(
    "/triggers/{trigger_id}",
    response_model=Trigger,
    response_model_exclude_unset=True,
    responses={**WRITE, **responses(404, 409)},
    dependencies=[ADMIN],
)
async def update_trigger(
    engine: EngineDep, trigger_id: TriggerId, document: TriggerDocument, caller: Caller
) -> Any:
    await engine.service.update_trigger(trigger_id, document, caller.actor)
    async with engine.db.read() as conn:
        return serialize.trigger(await wf_store.get_trigger(conn, trigger_id))


@router.delete(
    "/triggers/{trigger_id}",
    status_code=204,
    response_class=Response,
    responses=responses(403, 404),
    dependencies=[ADMIN],
)
async def delete_trigger(engine: EngineDep, trigger_id: TriggerId, caller: Caller) -> Response:
    await engine.service.delete_trigger(trigger_id, caller.actor)
    return Response(status_code=204)


@router.post(
    "/triggers/{trigger_id}/fire",
    status_code=202,
    response_model=ExecutionStarted,
    responses={**WRITE, **responses(404, 409)},
    dependencies=[OPERATE],
)
async def fire_trigger(
    engine: EngineDep,
    trigger_id: TriggerId,
    response: Response,
    caller: Caller,
    body: ExecuteBody = ExecuteRequest(),
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Call a `webhook` (or `manual`) trigger: body `{"input": ...}` as for execute. A
    debounced trigger answers `{"debounced": true, "triggerId", "key", "fireAt"}` (202)."""
    started = await engine.service.fire_trigger(
        trigger_id,
        body.input if body.input is not None else {},
        idempotency_key=idempotency_key,
        triggered_by=caller.name,
        priority=body.priority,
    )
    if isinstance(started, Held):
        return JSONResponse(serialize.debounced(started), status_code=202)
    if not started.created:
        response.headers["Idempotent-Replayed"] = "true"
    return {"executionId": started.execution_id, "status": started.status}
