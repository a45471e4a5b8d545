"""Workflow pages: the list with the editor, and one workflow with its graph, test panel and
Recent Executions. Also the editor's endpoint, which takes YAML or JSON text."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workflow_engine.api.deps import EngineDep
from workflow_engine.api.errors import describe
from workflow_engine.api.permissions import ADMIN, Caller
from workflow_engine.domain.access import Permission, Principal
from workflow_engine.domain.audit import Target
from workflow_engine.domain.definition import WorkflowDefinition
from workflow_engine.errors import NotFound, StorageError, WorkflowEngineError
from workflow_engine.storage import audit, usage
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import workflows as wf_store
from workflow_engine.web.graph import layout
from workflow_engine.web.render import forbidden, page, require_login
from workflow_engine.web.step_problems import locate

router = APIRouter(include_in_schema=False)
Login = Annotated[Principal, Depends(require_login)]
RECENT = 20
STARTER = """\
name: my-workflow
description: What this workflow does
retryMaxAttempts: 3
retryBackoffMs: 1000
steps:
  - key: greet
    type: transform
    config:
      output:
        message: "Hello {{ input.name }}"
  - key: pause
    type: delay
    config:
      ms: 500
  - key: done
    type: log
    config:
      message: "{{ steps.greet.output.message }}"
"""


@router.get("/workflows")
async def workflows_page(request: Request, engine: EngineDep, who: Login) -> Response:
    if not who.can(Permission.READ):
        # A trigger key reads nothing: it gets its own workflows' names and a Run button each.
        async with engine.db.read() as conn:
            names = await wf_store.workflow_names(conn, set(who.workflows or ()))
        return page(request, "run.html", runnable=sorted(names.items(), key=lambda i: i[1]))
    async with engine.db.read() as conn:
        rows = await wf_store.list_workflows(conn, limit=200, cursor=None, include_archived=False)
    return page(request, "workflows.html", workflows=rows, starter=STARTER, nav="workflows")


@router.get("/workflows/{workflow_id}")
async def workflow_page(
    request: Request, engine: EngineDep, workflow_id: str, who: Login
) -> Response:
    if not who.can(Permission.READ):
        return forbidden(request, who)
    async with engine.db.read() as conn:
        try:
            row = await wf_store.get_workflow(conn, workflow_id)
        except NotFound:
            return page(request, "not_found.html", status_code=404, what="workflow", id=workflow_id)
        versions = await wf_store.list_versions(conn, row["id"])
        triggers = await wf_store.list_triggers(conn, row["id"])
        recent = await ex_store.list_executions(
            conn, workflow_id=row["id"], status=None, limit=RECENT, cursor=None
        )
        entries = await audit.entries_of(conn, Target.WORKFLOW, row["id"])
        spent = await usage.for_workflow(conn, row["id"])
    active = next((v for v in versions if v["id"] == row["active_version_id"]), None)
    definition = active["definition"] if active else {}
    return page(
        request,
        "workflow.html",
        workflow=row,
        active=active,
        definition=definition,
        graph=layout(definition),
        definition_yaml=yaml.safe_dump(definition, sort_keys=False, allow_unicode=True),
        versions=versions,
        triggers=triggers,
        executions=recent,
        audit=entries,
        usage=spent,
        can_run=who.can_execute(str(row["id"])) and row["archived_at"] is None,
        nav="workflows",
    )


# --- the editor ----------------------------------------------------------------------------


class EditorRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=500_000)
    format: Literal["yaml", "json"] = "yaml"
    workflowId: str | None = None
    dryRun: bool = False


def _problem(message: str, *, loc: str = "", line: int | None = None) -> dict[str, Any]:
    return {"loc": loc, "message": message, "line": line}


def parse_document(text: str, fmt: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The document, or the errors saying where the text is wrong (line numbers from 1)."""
    try:
        value = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        return None, [_problem(f"not valid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno)]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        return None, [_problem(f"not valid YAML: {problem}", line=line)]
    if not isinstance(value, dict):
        return None, [_problem("a workflow document must be a mapping with name and steps")]
    return value, []


def _refused(problems: list[dict[str, Any]]) -> Response:
    return JSONResponse({"ok": False, "errors": problems}, status_code=422)


@router.post("/api/ui/editor", dependencies=[ADMIN])
async def save_document(engine: EngineDep, body: EditorRequest, caller: Caller) -> Response:
    """Validate (and unless dryRun, save) a workflow written in the UI's editor. 422 lists the
    problems, each with the path in the document (`steps.1.type`) and a line when known; one
    about a step (its needs, its type) also names it (`step`)."""
    document, problems = parse_document(body.text, body.format)
    if document is None:
        return _refused(problems)
    try:
        definition = WorkflowDefinition.model_validate(document)
        engine.service.check_definition(definition)
    except ValidationError as exc:
        _, items = describe(list(exc.errors()))
        return _refused([locate(item, document, body.text) for item in items])
    except WorkflowEngineError as exc:
        return _refused([locate(_problem(exc.message), document, body.text)])
    if body.dryRun:
        return JSONResponse({"ok": True, "errors": []})
    try:
        if body.workflowId:
            saved = await engine.service.update_workflow(body.workflowId, definition, caller.actor)
        else:
            saved = await engine.service.create_workflow(definition, caller.actor)
    except StorageError:
        raise  # not the document's fault: a 503 (api/errors.py), as for every request
    except WorkflowEngineError as exc:
        return _refused([_problem(exc.message)])
    return JSONResponse({"ok": True, "id": saved, "url": f"/workflows/{saved}"})
