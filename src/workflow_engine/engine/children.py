"""Sub-workflows: a `workflow` step runs a child execution, a real one (listed, live, with its
own steps and events) linked to its parent (`parent_execution_id`, `parent_step_key`).

The parent's worker runs the child itself when it can claim it, so a parent never waits for a
free worker slot that its own children hold. A redelivered parent finds the child of the same
try by its idempotency key `child:{parentId}:{stepKey}:{attempt}` instead of starting another; if
another worker runs it meanwhile, the parent follows it until it ends. When the parent stops
(cancel, a failed sibling, its timeout) its running child is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from workflow_engine.domain.status import ExecutionStatus
from workflow_engine.engine import checkpoints as cp
from workflow_engine.engine.branches import Halt
from workflow_engine.errors import NonRetryableStepError, NotFound
from workflow_engine.steps.base import ChildResult, RunChild, ToolRunner, ToolWorkflow
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import workflows as wf_store

if TYPE_CHECKING:
    from workflow_engine.engine.executor import Executor, Run

log = logging.getLogger(__name__)
MAX_DEPTH = 10
POLL_S = 0.25
CANCEL_WAIT_S = 10.0


class ChildExecutions:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.db = executor.db

    def runner(self, run: Run, state: cp.StepState, halt: Halt) -> RunChild:
        """`run_child` for one try of one step of `run`."""

        async def run_child(workflow: str, input: Any) -> Any:
            key = f"child:{run.execution_id}:{state.ref.key}:{state.attempt}"
            child_id = await self.start(run, state, workflow, input, key)
            return _result(child_id, await self.follow(child_id, halt))

        return run_child

    def tools(self, run: Run, state: cp.StepState, halt: Halt) -> ToolRunner:
        """The child executions of an llm step's tool calls (steps/llm_tools.py)."""
        return _Tools(self, run, state, halt)

    async def start(
        self, run: Run, state: cp.StepState, workflow: str, input: Any, key: str
    ) -> str:
        """The child execution of idempotency key `key`: found, or created and logged."""
        child_id, created = await self._find_or_create(run, state, workflow, input, key)
        if created:
            await run.journal.write(
                cp.Checkpoint(
                    logs=(
                        cp.LogLine(
                            "info",
                            f"Step '{state.ref.name}' started child execution {child_id}",
                            {**state.ref.fields(), "childExecutionId": child_id},
                        ),
                    )
                )
            )
        return child_id

    async def describe(self, workflow: str) -> ToolWorkflow:
        async with self.db.read() as conn:
            try:
                target = await wf_store.get_workflow(conn, workflow)
            except NotFound:
                raise NonRetryableStepError(f"tools: no workflow {workflow!r}") from None
            if target["archived_at"] is not None or target["active_version_id"] is None:
                raise NonRetryableStepError(f"tools: the workflow {workflow!r} is archived")
            version = await wf_store.get_version(conn, version_id=target["active_version_id"])
        definition = version["definition"]
        return ToolWorkflow(
            name=str(target["name"]),
            description=definition.get("description"),
            input_schema=definition.get("inputSchema"),
        )

    async def _find_or_create(
        self, run: Run, state: cp.StepState, workflow: str, input: Any, key: str
    ) -> tuple[str, bool]:
        async with self.db.write() as conn:
            depth = await ex_store.ancestry_depth(conn, run.execution_id, limit=MAX_DEPTH + 1)
            if depth >= MAX_DEPTH:
                raise NonRetryableStepError(
                    f"sub-workflows may nest at most {MAX_DEPTH} deep; this one would be deeper"
                )
            try:
                target = await wf_store.get_workflow(conn, workflow)
            except NotFound as exc:
                raise NonRetryableStepError(str(exc)) from exc
            existing = await ex_store.find_by_idempotency_key(conn, target["id"], key)
            if existing is not None:
                return str(existing["id"]), False
            if target["archived_at"] is not None or target["active_version_id"] is None:
                raise NonRetryableStepError(f"workflow {workflow!r} is archived")
            child_id = await ex_store.insert_execution(
                conn,
                ex_store.NewExecution(
                    workflow_id=target["id"],
                    workflow_version_id=target["active_version_id"],
                    input=input,
                    idempotency_key=key,
                    parent_execution_id=run.execution_id,
                    parent_step_key=state.ref.key,
                ),
            )
        return child_id, True

    async def follow(self, child_id: str, halt: Halt) -> Any:
        """Run the child here if it can be claimed, else wait for whoever runs it; its row once
        it has ended."""
        inline: asyncio.Task[Any] | None = None
        try:
            while True:
                if inline is None:
                    inline = await self._claim_and_run(child_id)
                if inline is not None and not inline.done():
                    await asyncio.wait({inline}, timeout=POLL_S)
                row = await self._row(child_id)
                if ExecutionStatus(row["status"]).is_final:
                    return row
                if inline is None:
                    await asyncio.sleep(POLL_S)
                elif inline.done():
                    # Its run ended without a final status (lease lost, an error): whoever
                    # claims it next runs it, maybe this worker again.
                    if not inline.cancelled() and inline.exception() is not None:
                        log.warning("child execution %s: %s", child_id, inline.exception())
                    inline = None
        except asyncio.CancelledError:
            if halt.is_set:
                # The parent stops, and its child with it.
                await self._cancel(child_id, inline)
            elif inline is not None:
                inline.cancel()  # shutdown: the child is handed back like its parent
                await asyncio.gather(inline, return_exceptions=True)
            raise

    async def _claim_and_run(self, child_id: str) -> asyncio.Task[Any] | None:
        config = self.executor.config
        async with self.db.autocommit() as conn:
            claim = await ex_store.claim(
                conn, child_id, owner=config.owner, lease_ms=config.lease_ms
            )
        if claim is None:
            return None
        return asyncio.create_task(self.executor.run(claim), name=f"child {child_id}")

    async def _row(self, child_id: str) -> Any:
        async with self.db.read() as conn:
            return await ex_store.get_execution(conn, child_id)

    async def _cancel(self, child_id: str, inline: asyncio.Task[Any] | None) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CANCEL_WAIT_S):
                async with self.db.write() as conn:
                    status = await ex_store.request_cancel(conn, child_id)
                if status == ExecutionStatus.RUNNING:
                    await self.executor.cancels.request(child_id)
                if inline is not None:
                    await asyncio.gather(inline, return_exceptions=True)


class _Tools:
    """`ToolRunner` for one try of one step: each tool call's child has the idempotency key
    `tool:{parentId}:{stepKey}:{callKey}` (no attempt in it: a later try joins the child an
    earlier one started rather than running the call again)."""

    def __init__(
        self, children: ChildExecutions, run: Run, state: cp.StepState, halt: Halt
    ) -> None:
        self.children = children
        self.parent = run
        self.state = state
        self.halt = halt

    async def describe(self, workflow: str) -> ToolWorkflow:
        return await self.children.describe(workflow)

    async def run(self, workflow: str, input: Any, call_key: str) -> ChildResult:
        key = f"tool:{self.parent.execution_id}:{self.state.ref.key}:{call_key}"
        child_id = await self.children.start(self.parent, self.state, workflow, input, key)
        row = await self.children.follow(child_id, self.halt)
        return ChildResult(
            execution_id=child_id,
            status=str(row["status"]),
            output=row["output"],
            error=row["error"],
        )


def _result(child_id: str, row: Any) -> Any:
    status = ExecutionStatus(row["status"])
    if status == ExecutionStatus.COMPLETED:
        return row["output"]
    if status == ExecutionStatus.CANCELLED:
        raise NonRetryableStepError(f"child execution {child_id} was cancelled")
    raise NonRetryableStepError(f"child execution {child_id} failed: {row['error']}")
