"""The dispatch worker: only pending executions of live workflows go on to the execution queue."""

from __future__ import annotations

from tests.conftest import StartEngine
from workflow_engine.domain.definition import WorkflowDefinition
from workflow_engine.engine.workers import Dispatcher
from workflow_engine.queue.base import VERSION_KEY, Job
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


async def test_an_execution_queued_with_its_version_is_failed_by_the_claim_once_archived(
    db_url: str, start_engine: StartEngine
) -> None:
    """The API queues a new execution with its version, so the dispatcher reads nothing: the
    claim catches a workflow archived in between, and the runner fails the execution."""
    running = await start_engine(db_url, execution_concurrency=1)
    engine = running.engine
    workflow_id = await engine.service.create_workflow(WorkflowDefinition.model_validate(DOC))
    async with engine.db.write() as conn:
        version_id = (await wf_store.get_workflow(conn, workflow_id))["active_version_id"]
        archived_id, live_id = [
            await ex_store.insert_execution(
                conn, ex_store.NewExecution(workflow_id, version_id, {"n": n})
            )
            for n in (1, 2)
        ]
        # `live_id` starts before the archive (a worker claimed it, then died: its lease is over).
        assert await ex_store.claim(conn, live_id, owner="gone", lease_ms=0) is not None
    await engine.service.archive_workflow(workflow_id)
    await engine.dispatch_queue.add(archived_id, {VERSION_KEY: version_id})
    failed = await running.wait(archived_id)
    assert failed["status"] == "failed"
    assert failed["error"] == "The workflow was archived before this execution started"
    assert failed["steps"] == []

    # One that had started before the archive is not stopped by it: it is taken again, finishes.
    await engine.dispatch_queue.add(live_id, {VERSION_KEY: version_id})
    done = await running.wait(live_id)
    assert done["status"] == "completed", done
