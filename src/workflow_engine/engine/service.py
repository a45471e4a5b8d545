"""What the API and the CLI ask of the engine: save workflows, start, cancel and re-run executions.

Mode-agnostic: it is handed the database, the queues and the cancel signals by `bootstrap`.
Every change made for someone takes its `actor` and records it in the audit log, in the same
transaction as the change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workflow_engine.batching import Batcher
from workflow_engine.domain.access import SYSTEM, Actor
from workflow_engine.domain.audit import Action, Target
from workflow_engine.domain.definition import TriggerDefinition, WorkflowDefinition
from workflow_engine.domain.priority import DEFAULT_PRIORITY
from workflow_engine.domain.status import RERUNNABLE, ExecutionStatus
from workflow_engine.engine import debounce
from workflow_engine.engine.cancel import CancelSignals
from workflow_engine.engine.definition_checks import check_definition
from workflow_engine.engine.event_triggers import TriggeredStart, start_event_triggers
from workflow_engine.errors import (
    Conflict,
    DuplicateKey,
    InvalidDefinition,
    NotFound,
    RefusedValue,
)
from workflow_engine.events.bus import Event, EventBus
from workflow_engine.queue.base import VERSION_KEY, JobQueue
from workflow_engine.steps.registry import StepRegistry
from workflow_engine.storage import approvals, audit
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import waits as wait_store
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.db import Connection, Database, Row

log = logging.getLogger(__name__)
ENQUEUE_TIMEOUT_S = 3.0
TriggersChanged = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class _Request:
    workflow: str
    """Id or name."""
    input: Any
    trigger_id: str | None
    triggered_by: str | None = None
    priority: int = DEFAULT_PRIORITY


def _refused_values(exc: Exception) -> bool:
    """The database refused a value (one request's input may be at fault), as opposed to a
    lost connection (StorageUnavailable), after which the INSERT may have been made."""
    return isinstance(exc, (RefusedValue, DuplicateKey, ValueError, TypeError))


def _new_execution(
    request: _Request, workflow: Row | NotFound
) -> ex_store.NewExecution | Exception:
    if isinstance(workflow, NotFound):
        return NotFound(str(workflow))  # one per caller: a raised exception keeps a traceback
    if workflow["archived_at"] is not None:
        return Conflict("the workflow is archived; it cannot be executed")
    return ex_store.NewExecution(
        workflow_id=workflow["id"],
        workflow_version_id=workflow["active_version_id"],
        input=request.input,
        trigger_id=request.trigger_id,
        triggered_by=request.triggered_by,
        priority=request.priority,
    )


async def _check_on_failure(
    conn: Connection, definition: WorkflowDefinition, workflow_id: str | None
) -> None:
    """The workflow `onFailure` names must exist and be live (a workflow may name itself)."""
    ref = definition.onFailure
    if ref is None or ref in (definition.name, workflow_id):
        return
    try:
        target = await wf_store.get_workflow(conn, ref)
    except NotFound:
        raise InvalidDefinition(
            f"onFailure: no workflow {ref!r} (name the workflow to start by its id or name; "
            "create it first)"
        ) from None
    if target["archived_at"] is not None:
        raise InvalidDefinition(f"onFailure: the workflow {ref!r} is archived")


@dataclass(frozen=True)
class PostedEvent:
    event_id: str
    resumed: list[str]
    """The waiting executions it woke."""
    started: list[TriggeredStart]
    """The executions its `event` triggers started."""
    debounced: list[debounce.Held] = dataclasses.field(default_factory=list)
    """The debounced `event` triggers that kept it (to start one execution after the burst)."""


@dataclass(frozen=True)
class Started:
    execution_id: str
    status: str
    created: bool
    """False when an `Idempotency-Key` matched an execution started before."""


class EngineService:
    def __init__(
        self,
        *,
        db: Database,
        registry: StepRegistry,
        dispatch_queue: JobQueue,
        cancels: CancelSignals,
        on_triggers_changed: TriggersChanged | None = None,
        bus: EventBus | None = None,
        event_retention_ms: int = 600_000,
    ) -> None:
        self.db = db
        self.bus = bus
        """Where a cancel of a `waiting` execution (made here, nobody holding it) is told."""
        self.event_retention_ms = event_retention_ms
        self.registry = registry
        self.dispatch_queue = dispatch_queue
        self.cancels = cancels
        self._on_triggers_changed = on_triggers_changed
        # Concurrent requests without an idempotency key share one INSERT (a bad one is retried
        # alone, so it cannot fail its neighbours).
        self._inserts = Batcher(
            self._insert_many, name="insert executions", isolate_failures=_refused_values
        )

    # --- workflows ------------------------------------------------------------------------------

    def check_definition(self, definition: WorkflowDefinition) -> None:
        """Checks that need the engine (engine/definition_checks.py); raises InvalidDefinition."""
        check_definition(definition, self.registry)

    async def create_workflow(self, definition: WorkflowDefinition, actor: Actor = SYSTEM) -> str:
        self.check_definition(definition)
        async with self.db.write() as conn:
            await _check_on_failure(conn, definition, None)
            workflow_id = await wf_store.create_workflow(conn, definition)
            await audit.record(
                conn, actor, Action.WORKFLOW_CREATED, Target.WORKFLOW, workflow_id, {"version": 1}
            )
        await self._triggers_changed(definition.triggers)
        return workflow_id

    async def update_workflow(
        self, id_or_name: str, definition: WorkflowDefinition, actor: Actor = SYSTEM
    ) -> str:
        """Save a new version; executions already started stay on theirs. Saving the document
        that is already active changes nothing (PUT is idempotent)."""
        self.check_definition(definition)
        async with self.db.write() as conn:
            row = await wf_store.get_workflow(conn, id_or_name)
            if row["archived_at"] is not None:
                raise Conflict("the workflow is archived")
            await _check_on_failure(conn, definition, str(row["id"]))
            active = (
                await wf_store.get_version(conn, version_id=row["active_version_id"])
                if row["active_version_id"]
                else None
            )
            number = None
            if active is None or active["definition"] != definition.document():
                number = await wf_store.add_version(conn, row["id"], definition)
            replaced = definition.triggers is not None and await wf_store.replace_triggers(
                conn, row["id"], definition.triggers
            )
            if number is not None or replaced:
                detail = {"version": number} if number is not None else {"triggers": True}
                await audit.record(
                    conn, actor, Action.WORKFLOW_SAVED, Target.WORKFLOW, row["id"], detail
                )
        await self._triggers_changed(definition.triggers)
        return str(row["id"])

    async def apply_workflow(self, definition: WorkflowDefinition, actor: Actor = SYSTEM) -> str:
        """Create the workflow named in the document, or update it."""
        async with self.db.read() as conn:
            try:
                row = await wf_store.get_workflow(conn, definition.name)
            except NotFound:
                return await self.create_workflow(definition, actor)
        return await self.update_workflow(str(row["id"]), definition, actor)

    async def archive_workflow(self, id_or_name: str, actor: Actor = SYSTEM) -> str:
        async with self.db.write() as conn:
            row = await wf_store.get_workflow(conn, id_or_name)
            if row["archived_at"] is None:
                await wf_store.archive_workflow(conn, row["id"])
                await audit.record(
                    conn, actor, Action.WORKFLOW_ARCHIVED, Target.WORKFLOW, row["id"]
                )
        await self._triggers_changed([])
        return str(row["id"])

    async def add_trigger(
        self, id_or_name: str, definition: TriggerDefinition, actor: Actor = SYSTEM
    ) -> str:
        async with self.db.write() as conn:
            row = await wf_store.get_workflow(conn, id_or_name)
            if row["archived_at"] is not None:
                raise Conflict("the workflow is archived")
            trigger_id = await wf_store.create_trigger(conn, row["id"], definition)
            await self._trigger_audit(conn, actor, Action.TRIGGER_ADDED, row["id"], trigger_id)
        await self._triggers_changed([definition])
        return trigger_id

    async def update_trigger(
        self, trigger_id: str, definition: TriggerDefinition, actor: Actor = SYSTEM
    ) -> None:
        async with self.db.write() as conn:
            current = await wf_store.get_trigger(conn, trigger_id)
            if current["type"] != definition.type:
                raise Conflict("a trigger's type cannot change; delete it and add a new one")
            workflow = await wf_store.get_workflow(conn, current["workflow_id"])
            if workflow["archived_at"] is not None:
                raise Conflict("the workflow is archived")
            await wf_store.update_trigger(conn, current["workflow_id"], trigger_id, definition)
            await self._trigger_audit(
                conn, actor, Action.TRIGGER_UPDATED, current["workflow_id"], trigger_id
            )
        await self._triggers_changed([definition])

    async def delete_trigger(self, trigger_id: str, actor: Actor = SYSTEM) -> None:
        async with self.db.write() as conn:
            current = await wf_store.get_trigger(conn, trigger_id)
            await wf_store.delete_trigger(conn, trigger_id)
            await audit.record(
                conn,
                actor,
                Action.TRIGGER_DELETED,
                Target.WORKFLOW,
                current["workflow_id"],
                {"triggerId": trigger_id, "type": current["type"]},
            )
        await self._triggers_changed([])

    @staticmethod
    async def _trigger_audit(
        conn: Connection, actor: Actor, action: Action, workflow_id: str, trigger_id: str
    ) -> None:
        trigger = await wf_store.get_trigger(conn, trigger_id)
        detail = {"triggerId": trigger_id, "type": trigger["type"]}
        await audit.record(conn, actor, action, Target.WORKFLOW, workflow_id, detail)

    async def _triggers_changed(self, triggers: list[TriggerDefinition] | None) -> None:
        if self._on_triggers_changed is None or triggers is None:
            return
        try:
            async with asyncio.timeout(ENQUEUE_TIMEOUT_S):
                await self._on_triggers_changed()
        except Exception as exc:
            # Saved in the database; the reconciler's periodic sync registers it later.
            log.warning("schedules not synced yet (%s); they will be shortly", exc)

    # --- executions -----------------------------------------------------------------------------

    async def execute(
        self,
        id_or_name: str,
        input: Any,
        *,
        idempotency_key: str | None = None,
        trigger_id: str | None = None,
        triggered_by: str | None = None,
        priority: int = DEFAULT_PRIORITY,
    ) -> Started:
        """Insert a `pending` execution of the active version and queue its dispatch job.
        `triggered_by`: the name of the key that asked (kept on the execution); `priority`
        (1..10): of the executions waiting for a worker, the higher start first."""
        request = _Request(id_or_name, input, trigger_id, triggered_by, priority)
        if not idempotency_key:
            execution_id, version_id = await self._inserts(request)
            # After the commit, so the runner always finds the row.
            await self._enqueue(execution_id, priority, version_id)
            return Started(execution_id, ExecutionStatus.PENDING.value, created=True)
        async with self.db.write() as conn:
            workflow = await wf_store.get_workflow(conn, id_or_name)
            new = _new_execution(request, workflow)
            if isinstance(new, Exception):
                raise new
            existing = await ex_store.find_by_idempotency_key(conn, workflow["id"], idempotency_key)
            if existing is not None:
                return Started(existing["id"], existing["status"], created=False)
            new = dataclasses.replace(new, idempotency_key=idempotency_key)
            try:
                execution_id = await ex_store.insert_keyed_execution(conn, new)
            except DuplicateKey:
                # The same key raced in from another request: answer with that execution.
                existing = await ex_store.find_by_idempotency_key(
                    conn, workflow["id"], idempotency_key
                )
                if existing is None:
                    raise
                return Started(existing["id"], existing["status"], created=False)
        # After the commit, so the runner always finds the row.
        await self._enqueue(execution_id, priority, new.workflow_version_id)
        return Started(execution_id, ExecutionStatus.PENDING.value, created=True)

    async def _insert_many(self, requests: list[_Request]) -> list[tuple[str, str] | Exception]:
        """The executions of several requests: the workflows they name read once each, then
        one INSERT (needing no transaction around it: a workflow archived meanwhile is caught
        by the claim, as it would be inside one); the ids with their versions."""
        async with self.db.autocommit() as conn:
            workflows: dict[str, Row | NotFound] = {}
            for ref in {request.workflow for request in requests}:
                try:
                    workflows[ref] = await wf_store.get_workflow(conn, ref)
                except NotFound as exc:
                    workflows[ref] = exc
            outcomes = [_new_execution(r, workflows[r.workflow]) for r in requests]
            news = [o for o in outcomes if isinstance(o, ex_store.NewExecution)]
            ids = iter(await ex_store.insert_executions(conn, news) if news else [])
        return [
            (next(ids), o.workflow_version_id) if isinstance(o, ex_store.NewExecution) else o
            for o in outcomes
        ]

    async def fire_trigger(
        self,
        trigger_id: str,
        input: Any,
        *,
        idempotency_key: str | None = None,
        triggered_by: str | None = None,
        priority: int = DEFAULT_PRIORITY,
    ) -> Started | debounce.Held:
        """Start an execution through a `webhook` or `manual` trigger (linked to it); a
        debounced trigger keeps the call instead (engine/debounce.py)."""
        async with self.db.read() as conn:
            trigger = await wf_store.get_trigger(conn, trigger_id)
        if trigger["type"] == "schedule":
            raise Conflict("schedule triggers fire on their own; they cannot be called")
        if not trigger["enabled"]:
            raise Conflict("the trigger is disabled")
        if debounce.debounce_of(trigger) is not None:
            async with self.db.write() as conn:
                held = await debounce.hold(conn, trigger, input)
            assert held is not None
            await debounce.schedule(self.dispatch_queue, held)
            return held
        return await self.execute(
            trigger["workflow_id"],
            input,
            idempotency_key=idempotency_key,
            trigger_id=trigger_id,
            triggered_by=triggered_by,
            priority=priority,
        )

    async def fire_schedule(
        self, trigger_id: str, workflow_id: str, input: Any, slot: datetime
    ) -> Started:
        """Start the execution of a schedule trigger's `slot`, once however often it is fired
        (a restart, a second scheduler, a job delivered again): its idempotency key is
        `schedule:{triggerId}:{slot}`."""
        return await self.execute(
            workflow_id,
            input,
            idempotency_key=f"schedule:{trigger_id}:{slot.isoformat()}",
            trigger_id=trigger_id,
        )

    async def cancel(self, execution_id: str, actor: Actor = SYSTEM) -> str:
        """Cancel a pending, running or waiting execution (again: a no-op) and its child
        executions; a finished one is a Conflict."""
        told: list[Event] = []
        async with self.db.write() as conn:
            before = await ex_store.execution_status(conn, execution_id)
            status = await self._cancel_one(conn, execution_id, told)
            if status in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED):
                raise Conflict(
                    f"execution {execution_id!r} is already {status}; only pending, running or "
                    "waiting executions can be cancelled"
                )
            if before != ExecutionStatus.CANCELLED:
                await audit.record(
                    conn,
                    actor,
                    Action.EXECUTION_CANCELLED,
                    Target.EXECUTION,
                    execution_id,
                    {"was": before},
                )
            children = await ex_store.active_descendants(conn, execution_id)
            running = [execution_id] if status == ExecutionStatus.RUNNING else []
            for child_id in children:
                if await self._cancel_one(conn, child_id, told) == ExecutionStatus.RUNNING:
                    running.append(child_id)
        for running_id in running:
            await self.cancels.request(running_id)
        if self.bus is not None:
            for event in told:
                await self.bus.publish(event)
        return status

    @staticmethod
    async def _cancel_one(conn: Any, execution_id: str, told: list[Event]) -> str:
        status = await ex_store.request_cancel(conn, execution_id)
        if status != ExecutionStatus.WAITING:
            return status
        # Nobody holds a waiting execution: it is cancelled here, its waits removed.
        rows = await wait_store.cancel_waiting(conn, execution_id)
        workflow_id = (await ex_store.get_execution(conn, execution_id))["workflow_id"]
        told.extend(Event.from_row(row, workflow_id) for row in rows)
        return ExecutionStatus.CANCELLED.value

    async def post_event(self, name: str, key: str, data: Any) -> PostedEvent:
        """`POST /api/events`: wake every execution waiting for (name, key), once each (their
        waits get `data`); an event that met none is kept EVENT_RETENTION_MS for a wait that
        registers later. In the same transaction, start every workflow whose `event` trigger
        listens to `name` (engine/event_triggers.py)."""
        async with self.db.write() as conn:
            posted = await wait_store.post_event(
                conn, name, key, data, retention_ms=self.event_retention_ms
            )
            triggered = await start_event_triggers(conn, name, posted.event_id, data)
        # Together, so the queue sends them in one pipeline (its adds are batched).
        await asyncio.gather(
            *(
                self._enqueue(execution_id)
                for execution_id in [*posted.resumed, *(s.execution_id for s in triggered.started)]
            ),
            *(debounce.schedule(self.dispatch_queue, held) for held in triggered.held),
        )
        return PostedEvent(posted.event_id, posted.resumed, triggered.started, triggered.held)

    async def decide(
        self,
        execution_id: str,
        step_key: str,
        *,
        approved: bool,
        comment: str | None,
        actor: Actor = SYSTEM,
    ) -> dict[str, Any]:
        """Approve or reject the `approval` step `step_key` (once: a second decision is a
        Conflict) and wake the execution; the decision, which is the step's output
        `{"approved", "by", "comment", "at"}`, is in the audit log too."""
        async with self.db.write() as conn:
            decided = await approvals.decide(
                conn, execution_id, step_key, approved=approved, by=actor.name, comment=comment
            )
            await audit.record(
                conn,
                actor,
                Action.STEP_APPROVED if approved else Action.STEP_REJECTED,
                Target.EXECUTION,
                execution_id,
                {"stepKey": step_key, "comment": comment},
                at=decided.at,
            )
        if decided.resumed:
            await self._enqueue(execution_id)
        return decided.decision

    async def rerun(self, execution_id: str, actor: Actor = SYSTEM) -> str:
        """A new execution of the same version and input: the completed and skipped steps (and
        map items) are carried over, not run again; the failed and the not-started ones run."""
        async with self.db.write() as conn:
            source = await ex_store.get_execution(conn, execution_id)
            if source["status"] not in RERUNNABLE:
                raise Conflict(
                    f"only failed or cancelled executions can be re-run (this one is "
                    f"{source['status']})"
                )
            new = ex_store.NewExecution(
                workflow_id=source["workflow_id"],
                workflow_version_id=source["workflow_version_id"],
                input=source["input"],
                trigger_id=source["trigger_id"],
                rerun_of_id=source["id"],
                triggered_by=actor.name,
                priority=source["priority"],
            )
            new_id = await ex_store.insert_execution(conn, new)
            await ex_store.copy_finished_steps(conn, execution_id, new_id)
            await audit.record(
                conn,
                actor,
                Action.EXECUTION_RERUN,
                Target.EXECUTION,
                execution_id,
                {"newExecutionId": new_id},
            )
        await self._enqueue(new_id, new.priority, new.workflow_version_id)
        return new_id

    async def _enqueue(
        self, execution_id: str, priority: int = DEFAULT_PRIORITY, version_id: str | None = None
    ) -> None:
        """Queue the dispatch job of a committed `pending` row; with the row's version (and
        priority) when the caller knows it, so the dispatcher has nothing to read. If the queue
        is unreachable (Redis restarting) the row is still accepted: the reconciler queues it
        later."""
        data = None if version_id is None else {VERSION_KEY: version_id}
        try:
            async with asyncio.timeout(ENQUEUE_TIMEOUT_S):
                await self.dispatch_queue.add(execution_id, data, priority=priority)
        except Exception as exc:
            log.warning(
                "execution %s accepted but not queued yet (%s); the reconciler will queue it",
                execution_id,
                exc,
            )
