"""Failure alerts: a workflow's `onFailure` names another workflow (by id or name, as a
`workflow` step names one) that the engine starts each time an execution of the workflow ends
`failed` (not `cancelled`), with the input

    {"executionId", "workflowId", "workflowName", "error",
     "failedStep": {"stepId", "stepKey", "error"} or null (no step failed: a timeout, ...)}

Once per failed execution, whatever happens: the alert's `pending` execution is inserted in the
same transaction that stores the `failed` status (the executor's final write, fenced, or the
statement failing an execution that cannot run), with the idempotency key
`onFailure:{executionId}`. A delivery that lost its lease writes neither; a crash after the
commit leaves a `pending` alert that the reconciler queues if its dispatch job was never sent.

No loops: an execution started by a failure alert, or running below one (a child execution of
it), does not follow its workflow's `onFailure` when it fails; a log line on it says so. So an
alert workflow may name itself, or a workflow that names it, without alerting forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from workflow_engine.domain.definition import WorkflowDefinition
from workflow_engine.engine.checkpoints import LogLine
from workflow_engine.engine.versions import VersionCache
from workflow_engine.errors import DuplicateKey, NotFound
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.db import Connection, Database

log = logging.getLogger(__name__)
KEY_PREFIX = "onFailure:"
MAX_LINEAGE = 16
"""Parents looked at for an alert above a failed child execution (nesting is capped at 10)."""
ENQUEUE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class FailedStep:
    step_id: str
    step_key: str
    error: str

    def as_input(self) -> dict[str, Any]:
        return {"stepId": self.step_id, "stepKey": self.step_key, "error": self.error}


@dataclass(frozen=True)
class Failure:
    """A failed execution of a workflow whose definition has an `onFailure`."""

    execution_id: str
    workflow_id: str
    definition: WorkflowDefinition
    error: str | None
    failed_step: FailedStep | None = None

    def alert_input(self) -> dict[str, Any]:
        return {
            "executionId": self.execution_id,
            "workflowId": self.workflow_id,
            "workflowName": self.definition.name,
            "error": self.error,
            "failedStep": self.failed_step.as_input() if self.failed_step else None,
        }


@dataclass(frozen=True)
class Alert:
    """What a failure leads to: the alert's execution row to insert (None: no alert), and a
    log line for the failed execution saying what happened."""

    row: dict[str, Any] | None
    log: LogLine

    @property
    def execution_id(self) -> str | None:
        return str(self.row["id"]) if self.row is not None else None


class FailureAlerts:
    def __init__(
        self, db: Database, *, enqueue: Callable[[str], Awaitable[None]] | None = None
    ) -> None:
        """`enqueue` sends a new execution's dispatch job (without it, or when it fails, the
        reconciler queues the `pending` alert on its next pass)."""
        self.db = db
        self._enqueue = enqueue

    async def plan(self, failure: Failure, conn: Connection | None = None) -> Alert | None:
        """The alert for `failure`, or None when its workflow has no `onFailure`. Reads the
        target workflow (through `conn` when given); inserts nothing."""
        target_ref = failure.definition.onFailure
        if target_ref is None:
            return None
        if conn is None:
            async with self.db.read() as own:
                return await self.plan(failure, own)
        fields = {"onFailure": target_ref}
        if await ex_store.keyed_in_lineage(
            conn, failure.execution_id, KEY_PREFIX, limit=MAX_LINEAGE
        ):
            return Alert(
                None,
                LogLine(
                    "info",
                    f"Failure alert not started: this execution runs for a failure alert, and "
                    f"an alert's own onFailure ({target_ref!r}) is not followed",
                    fields,
                ),
            )
        try:
            target = await wf_store.get_workflow(conn, target_ref)
        except NotFound:
            target = None
        if target is None or target["archived_at"] is not None or not target["active_version_id"]:
            why = "not found" if target is None else "archived"
            return Alert(
                None,
                LogLine(
                    "error",
                    f"Failure alert not started: the onFailure workflow {target_ref!r} is {why}",
                    fields,
                ),
            )
        row = ex_store.execution_row(
            ex_store.NewExecution(
                workflow_id=target["id"],
                workflow_version_id=target["active_version_id"],
                input=failure.alert_input(),
                idempotency_key=f"{KEY_PREFIX}{failure.execution_id}",
            )
        )
        return Alert(
            row,
            LogLine(
                "info",
                f"Failure alert: started workflow '{target['name']}' (execution {row['id']})",
                {**fields, "alertExecutionId": row["id"]},
            ),
        )

    async def start_with(self, conn: Connection, failed_id: str, alert: Alert) -> str | None:
        """Insert `alert` (and its log line on the failed execution) in the caller's
        transaction, for failures stored outside the executor; the alert's id, or None when
        none was inserted (no target, or one was started before for this execution)."""
        if alert.row is not None:
            try:
                await ex_store.insert_keyed_row(conn, alert.row)
            except DuplicateKey:
                return None
        line = alert.log
        await ex_store.insert_log(conn, failed_id, line.level, line.message, line.metadata)
        return alert.execution_id

    async def enqueue(self, execution_id: str | None) -> None:
        """Send a committed alert's dispatch job (best effort: see __init__)."""
        if execution_id is None or self._enqueue is None:
            return
        try:
            async with asyncio.timeout(ENQUEUE_TIMEOUT_S):
                await self._enqueue(execution_id)
        except Exception as exc:
            log.warning(
                "failure alert %s stored but not queued yet (%s); the reconciler will queue it",
                execution_id,
                exc,
            )


class Failures:
    """Fails executions that cannot run (their workflow archived before they started, their
    worker dying at every delivery), starting their failure alerts in the same transaction."""

    def __init__(self, db: Database, versions: VersionCache, alerts: FailureAlerts) -> None:
        self.db = db
        self.versions = versions
        self.alerts = alerts

    async def fail(self, execution_id: str, version_id: str, error: str) -> bool:
        """Fails the execution unless it has finished meanwhile; whether it did."""
        async with self.db.write() as conn:
            failed, alert_id = await self.fail_in(conn, execution_id, version_id, error)
        await self.alerts.enqueue(alert_id)
        return failed

    async def fail_in(
        self, conn: Connection, execution_id: str, version_id: str, error: str
    ) -> tuple[bool, str | None]:
        """`fail` in the caller's write transaction: whether it failed the execution, and the
        alert to enqueue once it commits."""
        if not await ex_store.fail_unclaimable(conn, execution_id, error):
            return False, None
        version = await self.versions.get(version_id, conn=conn)
        if version.definition.onFailure is None:
            return True, None
        failure = Failure(execution_id, version.workflow_id, version.definition, error)
        alert = await self.alerts.plan(failure, conn)
        if alert is None:
            return True, None
        return True, await self.alerts.start_with(conn, execution_id, alert)
