"""The dispatch worker: only pending executions of live workflows go on to the execution queue."""

from __future__ import annotations

from tests.conftest import StartEngine
from workflow_engine.domain.definition import WorkflowDefinition
from workflow_engine.engine.workers import Dispatcher
from workflow_engine.queue.base import Job
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import workflows as wf_store

DOC = {"name": "w", "steps": [{"key": "a", "type": "transform", "config": {"output": 1}}]}


async def test_dispatch_fails_an_execution_whose_workflow_was_archived(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start_engine(db_url, execution_concurrency=1)
    engine = running.engine
    workflow_id = await engine.service.create_workflow(WorkflowDefinition.model_validate(DOC))
    async with engine.db.write() as conn:
        workflow = await wf_store.get_workflow(conn, workflow_id)
        execution_id = await ex_store.insert_execution(
            conn, ex_store.NewExecution(workflow_id, workflow["active_version_id"], {})
        )
    await engine.service.archive_workflow(workflow_id)
    await Dispatcher(engine.db, engine.execution_queue)(Job(id=execution_id, queue="d"))
    body = (await running.client.get(f"/api/executions/{execution_id}")).json()
    assert body["status"] == "failed"
    assert "archived" in body["error"]
    await Dispatcher(engine.db, engine.execution_queue)(Job(id="no-such-execution", queue="d"))
