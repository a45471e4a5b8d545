"""`/openapi.json` documents every request body and response shape (issue 12, defect 5):
checked on the document, byte for byte against what the routes returned before they had
models, and by a Python client generated from it that drives a live engine."""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from starlette.responses import JSONResponse

from tests.conftest import Running, StartEngine
from tests.support.flows import start
from tests.support.realtime import live_server
from workflow_engine.api import serialize
from workflow_engine.api.middleware import OPEN_PATHS, SIGNED_PREFIXES
from workflow_engine.storage import audit
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import workflows as wf_store

pytestmark = pytest.mark.timeout(120)

WORKFLOW = {
    "name": "documented",
    "description": "for the OpenAPI tests",
    "steps": [
        {"key": "greet", "type": "transform", "config": {"output": {"m": "Hi {{ input.name }}"}}},
        {"key": "note", "type": "log", "config": {"message": "said {{ steps.greet.output.m }}"}},
    ],
    "triggers": [
        {"type": "schedule", "cron": "0 3 * * *", "timezone": "Europe/Paris", "input": {"n": 1}},
        {"type": "manual"},
    ],
}
ERROR_REF = "#/components/schemas/ErrorResponse"


async def _openapi(running: Running) -> dict[str, Any]:
    response = await running.client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def test_every_route_documents_its_bodies_and_errors(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    spec = await _openapi(running)
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's own 422 shape is not used
    operations = [
        (path, method, op)
        for path, item in spec["paths"].items()
        if path.startswith("/api/")
        for method, op in item.items()
    ]
    assert len(operations) >= 20
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        success = [code for code in op["responses"] if code.startswith("2")]
        signed = path.startswith(SIGNED_PREFIXES)
        # A signed webhook answers 202, or 200 with the output when `?wait=` saw it end.
        assert len(success) == 1 or (signed and sorted(success) == ["200", "202"]), where
        for code in success:
            if code == "204":
                continue
            content = op["responses"][code]["content"]["application/json"]
            assert content["schema"].get("$ref", "").startswith("#/components/schemas/"), where
        for code, answer in op["responses"].items():
            if code.startswith(("4", "5")) and path != "/api/health":  # health: always 200
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (where, code)
        if path not in OPEN_PATHS:
            assert {"401", "422"} <= set(op["responses"]), where
            # Signed webhooks take no API key: their own secret signs each call.
            assert op.get("security") == (None if signed else [{"bearerAuth": []}]), where
        if method in ("put", "post") and "requestBody" in op:
            assert {"400", "413", "415"} <= set(op["responses"]), where
    # Every route that takes a JSON body documents it.
    bodies = {
        f"{method.upper()} {path}": op["requestBody"]["content"]["application/json"]["schema"]
        for path, method, op in operations
        if "requestBody" in op
    }
    document = {"$ref": "#/components/schemas/WorkflowDefinition"}
    assert bodies["POST /api/workflows"] == document
    assert bodies["PUT /api/workflows/{workflow_id}"] == document
    execute = bodies["POST /api/workflows/{workflow_id}/execute"]
    assert execute["$ref"] == "#/components/schemas/ExecuteRequest"
    assert bodies["POST /api/triggers/{trigger_id}/fire"]["$ref"].endswith("/ExecuteRequest")
    trigger = bodies["POST /api/workflows/{workflow_id}/triggers"]
    assert trigger["discriminator"]["propertyName"] == "type"
    assert bodies["PUT /api/triggers/{trigger_id}"] == trigger
    assert set(bodies) == {
        "POST /api/workflows",
        "PUT /api/workflows/{workflow_id}",
        "POST /api/workflows/{workflow_id}/execute",
        "POST /api/triggers/{trigger_id}/fire",
        "POST /api/workflows/{workflow_id}/triggers",
        "PUT /api/triggers/{trigger_id}",
        "POST /api/keys",
        "POST /api/events",
        "POST /api/executions/{execution_id}/steps/{step_key}/approve",
        "POST /api/executions/{execution_id}/steps/{step_key}/reject",
    }
    assert bodies["POST /api/keys"]["$ref"].endswith("/KeyRequest")
    decision = bodies["POST /api/executions/{execution_id}/steps/{step_key}/approve"]
    assert {"$ref": "#/components/schemas/DecisionRequest"} in decision["anyOf"]
    # The one error shape: detail, and errors for invalid values.
    error = schemas["ErrorResponse"]
    assert error["required"] == ["detail"]
    assert error["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/FieldError"}
    # The document is the domain's model: unknown fields are refused, `if` keeps its name.
    definition = schemas["WorkflowDefinition"]
    assert definition["additionalProperties"] is False
    assert "if" in schemas["StepDefinition"]["properties"]
    detail = schemas["ExecutionDetail"]["properties"]
    assert {"steps", "logs", "children", "status", "durationMs"} <= set(detail)


def _rendered(body: Any) -> bytes:
    """What the routes answered before they had response models: serialize.py's dicts
    rendered by FastAPI's default JSONResponse."""
    return bytes(JSONResponse(body).body)


async def test_responses_are_what_the_routes_returned_before_their_models(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    created = await running.create_workflow(WORKFLOW)
    first = await running.execute("documented", {"name": "Ada", "ü": [1.5, None, True]})
    await running.wait(first)
    second = await running.execute("documented", {"name": "Bob"})
    await running.wait(second)
    async with running.engine.db.read() as conn:
        row = await wf_store.get_workflow(conn, created["id"])
        version = await wf_store.get_version(conn, version_id=row["active_version_id"])
        triggers = await wf_store.list_triggers(conn, row["id"])
        versions = await wf_store.list_versions(conn, row["id"])
        executions = await ex_store.list_executions(
            conn, workflow_id=row["id"], status=None, limit=50, cursor=None
        )
        execution = await ex_store.get_execution(conn, first)
        steps = await ex_store.list_steps(conn, first)
        logs = await ex_store.list_logs(conn, first)
        history = await audit.entries_of(conn, "workflow", row["id"])
    expected: dict[str, Any] = {
        f"/api/workflows/{row['id']}": {
            **serialize.workflow(row, version=version, triggers=triggers),
            "audit": [serialize.audit(entry) for entry in history],
        },
        "/api/workflows": {"workflows": [serialize.workflow(row)], "nextCursor": None},
        f"/api/workflows/{row['id']}/versions": {
            "versions": [serialize.version(v) for v in versions]
        },
        f"/api/workflows/{row['id']}/versions/1": serialize.version(version),
        f"/api/workflows/{row['id']}/triggers": {
            "triggers": [serialize.trigger(t) for t in triggers]
        },
        f"/api/executions?workflowId={row['id']}": {
            "executions": [serialize.execution(e) for e in executions],
            "nextCursor": None,
        },
        f"/api/executions/{first}": {
            **serialize.execution(execution),
            "usage": {"promptTokens": 0, "completionTokens": 0, "totalTokens": 0, "requests": 0},
            "steps": [serialize.step(s) for s in steps],
            "waits": [],
            "logs": [serialize.log(entry) for entry in logs],
            "children": [],
            "audit": [],
        },
    }
    for url, body in expected.items():
        response = await running.client.get(url)
        assert response.status_code == 200, (url, response.text)
        if db_url.startswith("sqlite") or "trigger" not in response.text:
            assert response.content == _rendered(body), url
        else:
            # PostgreSQL's JSONB hands a trigger's settings back in its own key order; the
            # model puts them in the document's order (as on SQLite). Same JSON.
            assert response.json() == json.loads(_rendered(body)), url
    assert len(expected[f"/api/executions?workflowId={row['id']}"]["executions"]) == 2
    # The answers of the writes too.
    response = await running.client.post(f"/api/executions/{first}/rerun")
    assert response.status_code == 409  # completed: nothing to re-run
    trigger = await running.client.post(
        f"/api/workflows/{row['id']}/triggers", json={"type": "webhook"}
    )
    assert trigger.status_code == 201
    async with running.engine.db.read() as conn:
        stored = await wf_store.get_trigger(conn, trigger.json()["id"])
    assert trigger.content == _rendered(serialize.trigger(stored))
    fired = await running.client.post(f"/api/triggers/{stored['id']}/fire")
    assert fired.status_code == 202
    assert fired.content == _rendered(
        {"executionId": fired.json()["executionId"], "status": "pending"}
    )
    await running.wait(fired.json()["executionId"])


# --- a client generated from /openapi.json -------------------------------------------------------

_GENERATED: dict[str, ModuleType] = {}


def _generate(spec: dict[str, Any], folder: Path) -> ModuleType:
    """Generate a client package from `spec` with openapi-python-client (no network), and
    import it from `folder`."""
    package = f"we_client_{uuid.uuid4().hex[:8]}"
    (folder / "openapi.json").write_text(json.dumps(spec))
    # No post hooks: the generated code is imported, not read, so it need not be formatted.
    (folder / "config.yml").write_text(f"package_name_override: {package}\npost_hooks: []\n")
    generator = Path(sys.executable).parent / "openapi-python-client"
    result = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            "openapi.json",
            "--config",
            "config.yml",
            "--meta",
            "none",
            "--output-path",
            package,
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # A warning means a part of the document the generator could not turn into code.
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(package)
    finally:
        sys.path.remove(str(folder))


@pytest.fixture(scope="module")
def generated_clients() -> Iterator[dict[str, ModuleType]]:
    """One client per distinct /openapi.json, shared by the tests of this module."""
    yield _GENERATED
    for module in _GENERATED.values():
        for name in [m for m in sys.modules if m.split(".")[0] == module.__name__]:
            del sys.modules[name]
    _GENERATED.clear()


async def test_a_generated_client_runs_a_workflow(
    db_url: str, tmp_path: Path, generated_clients: dict[str, ModuleType]
) -> None:
    async with live_server(db_url, tmp_path / "engine") as server:
        spec = (await server.client.get("/openapi.json")).json()
        key = json.dumps(spec, sort_keys=True)
        if key not in generated_clients:
            generated_clients[key] = await asyncio.to_thread(_generate, spec, tmp_path)
        package = generated_clients[key].__name__

        def part(name: str) -> Any:
            return importlib.import_module(f"{package}.{name}")

        models = part("models")
        create_workflow = part("api.workflows.create_workflow")
        execute = part("api.workflows.execute")
        list_executions = part("api.executions.list_executions")
        get_execution = part("api.executions.get_execution")
        client = part("client").AuthenticatedClient(base_url=server.url, token=server.token)

        async with client:
            document = models.WorkflowDefinition.from_dict(WORKFLOW)
            workflow = await create_workflow.asyncio(client=client, body=document)
            assert isinstance(workflow, models.Workflow), workflow
            assert workflow.name == "documented" and workflow.version == 1
            assert [t.type_ for t in workflow.triggers] == ["schedule", "manual"]
            assert workflow.triggers[0].timezone == "Europe/Paris"

            # An error comes back as the documented ErrorResponse.
            again = await create_workflow.asyncio(client=client, body=document)
            assert isinstance(again, models.ErrorResponse)
            assert "already exists" in again.detail

            started = await execute.asyncio(
                workflow.id,
                client=client,
                body=models.ExecuteRequest.from_dict({"input": {"name": "Ada"}}),
                idempotency_key="generated-1",
            )
            assert isinstance(started, models.ExecutionStarted), started
            assert started.status == models.ExecutionStatus.PENDING

            for _ in range(500):
                execution = await get_execution.asyncio(started.execution_id, client=client)
                assert isinstance(execution, models.ExecutionDetail), execution
                if execution.status in (
                    models.ExecutionStatus.COMPLETED,
                    models.ExecutionStatus.FAILED,
                ):
                    break
                await asyncio.sleep(0.02)
            assert execution.status == models.ExecutionStatus.COMPLETED, execution.error
            assert [s.step_key for s in execution.steps] == ["greet", "note"]
            assert execution.steps[0].status == models.StepStatus.COMPLETED
            assert execution.steps[0].output == {"m": "Hi Ada"}
            assert execution.duration_ms is not None and execution.completed_at.year >= 2026
            assert any("said Hi Ada" in log.message for log in execution.logs)

            listed = await list_executions.asyncio(client=client, workflow_id=workflow.id, limit=10)
            assert isinstance(listed, models.ExecutionList), listed
            assert [e.id for e in listed.executions] == [started.execution_id]
            assert listed.next_cursor is None

            missing = await get_execution.asyncio("no-such", client=client)
            assert isinstance(missing, models.ErrorResponse) and missing.detail
