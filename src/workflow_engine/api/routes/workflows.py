"""Workflows, their versions and triggers; and starting an execution."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response
from pydantic import BaseModel, ConfigDict, TypeAdapter

from workflow_engine.api import serialize
from workflow_engine.api.deps import EngineDep, JsonObject, OptionalJson, parse_cursor
from workflow_engine.domain.definition import TriggerDefinition, WorkflowDefinition
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.pagination import Cursor

router = APIRouter(prefix="/api", tags=["workflows"])
_trigger = TypeAdapter(TriggerDefinition)


class ExecuteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: Any = None


async def _workflow_body(engine: EngineDep, id_or_name: str) -> dict[str, Any]:
    async with engine.db.read() as conn:
        row = await wf_store.get_workflow(conn, id_or_name)
        version = (
            await wf_store.get_version(conn, version_id=row["active_version_id"])
            if row["active_version_id"]
            else None
        )
        triggers = await wf_store.list_triggers(conn, row["id"])
    return serialize.workflow(row, version=version, triggers=triggers)


@router.post("/workflows", status_code=201)
async def create_workflow(engine: EngineDep, document: JsonObject) -> Any:
    """Create a workflow from a whole document (its version 1)."""
    definition = WorkflowDefinition.model_validate(document)
    workflow_id = await engine.service.create_workflow(definition)
    return await _workflow_body(engine, workflow_id)


@router.get("/workflows")
async def list_workflows(
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
    includeArchived: bool = False,
) -> Any:
    async with engine.db.read() as conn:
        rows = await wf_store.list_workflows(
            conn, limit=limit, cursor=parse_cursor(cursor), include_archived=includeArchived
        )
    next_cursor = Cursor.after_row(rows[-1]).encode() if len(rows) == limit else None
    return {"workflows": [serialize.workflow(r) for r in rows], "nextCursor": next_cursor}


@router.get("/workflows/{workflow_id}")
async def get_workflow(engine: EngineDep, workflow_id: str) -> Any:
    """A workflow by id or name, with its active definition and triggers."""
    return await _workflow_body(engine, workflow_id)


@router.put("/workflows/{workflow_id}")
async def update_workflow(engine: EngineDep, workflow_id: str, document: JsonObject) -> Any:
    """Save a whole document as a new version; running executions keep theirs."""
    definition = WorkflowDefinition.model_validate(document)
    saved_id = await engine.service.update_workflow(workflow_id, definition)
    return await _workflow_body(engine, saved_id)


@router.delete("/workflows/{workflow_id}")
async def archive_workflow(engine: EngineDep, workflow_id: str) -> Any:
    """Archive: no new executions, schedules off; history is kept."""
    archived_id = await engine.service.archive_workflow(workflow_id)
    return await _workflow_body(engine, archived_id)


@router.get("/workflows/{workflow_id}/versions")
async def list_versions(engine: EngineDep, workflow_id: str) -> Any:
    async with engine.db.read() as conn:
        row = await wf_store.get_workflow(conn, workflow_id)
        versions = await wf_store.list_versions(conn, row["id"])
    return {"versions": [serialize.version(v) for v in versions]}


@router.get("/workflows/{workflow_id}/versions/{number}")
async def get_version(
    engine: EngineDep, workflow_id: str, number: Annotated[int, Path(ge=1, le=2**31 - 1)]
) -> Any:
    async with engine.db.read() as conn:
        row = await wf_store.get_workflow(conn, workflow_id)
        version = await wf_store.get_version(conn, workflow_id=row["id"], number=number)
    return serialize.version(version)


@router.get("/workflows/{workflow_id}/triggers")
async def list_triggers(engine: EngineDep, workflow_id: str) -> Any:
    async with engine.db.read() as conn:
        row = await wf_store.get_workflow(conn, workflow_id)
        triggers = await wf_store.list_triggers(conn, row["id"])
    return {"triggers": [serialize.trigger(t) for t in triggers]}


@router.post("/workflows/{workflow_id}/triggers", status_code=201)
async def add_trigger(engine: EngineDep, workflow_id: str, document: JsonObject) -> Any:
    trigger_id = await engine.service.add_trigger(workflow_id, _trigger.validate_python(document))
    async with engine.db.read() as conn:
        return serialize.trigger(await wf_store.get_trigger(conn, trigger_id))


@router.put("/triggers/{trigger_id}")
async def update_trigger(engine: EngineDep, trigger_id: str, document: JsonObject) -> Any:
    await engine.service.update_trigger(trigger_id, _trigger.validate_python(document))
    async with engine.db.read() as conn:
        return serialize.trigger(await wf_store.get_trigger(conn, trigger_id))


@router.delete("/triggers/{trigger_id}", status_code=204)
async def delete_trigger(engine: EngineDep, trigger_id: str) -> Response:
    await engine.service.delete_trigger(trigger_id)
    return Response(status_code=204)


@router.post("/workflows/{workflow_id}/execute", status_code=202)
async def execute(
    engine: EngineDep,
    workflow_id: str,
    response: Response,
    body: OptionalJson,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> Any:
    """Queue an execution of the workflow's active version; answers at once with its id."""
    request = ExecuteRequest.model_validate(body if body is not None else {})
    started = await engine.service.execute(
        workflow_id,
        request.input if request.input is not None else {},
        idempotency_key=idempotency_key,
    )
    if not started.created:
        response.headers["Idempotent-Replayed"] = "true"
    return {"executionId": started.execution_id, "status": started.status}


@router.post("/triggers/{trigger_id}/fire", status_code=202)
async def fire_trigger(
    engine: EngineDep,
    trigger_id: str,
    response: Response,
    body: OptionalJson,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> Any:
    """Call a `webhook` (or `manual`) trigger: body `{"input": ...}` as for execute."""
    request = ExecuteRequest.model_validate(body if body is not None else {})
    started = await engine.service.fire_trigger(
        trigger_id,
        request.input if request.input is not None else {},
        idempotency_key=idempotency_key,
    )
    if not started.created:
        response.headers["Idempotent-Replayed"] = "true"
    return {"executionId": started.execution_id, "status": started.status}
