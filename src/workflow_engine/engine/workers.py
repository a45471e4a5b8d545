"""The two job handlers: dispatch (check, then hand to the execution queue) and execution."""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime

from workflow_engine.engine import ratelimit
from workflow_engine.engine.executor import Executor
from workflow_engine.engine.service import EngineService
from workflow_engine.errors import Conflict, Delay, NotFound
from workflow_engine.queue.base import Job, JobQueue
from workflow_engine.redis_support.schedules import slot_of
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage.db import Database

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Dispatcher:
    """`workflow-dispatch` handler: the execution must exist, be pending and its workflow live.

    A job a schedule fired (data `triggerId`, no execution yet) first creates its execution, once
    per slot: the idempotency key is `schedule:{triggerId}:{slot}`.
    """

    def __init__(
        self, db: Database, execution_queue: JobQueue, service: EngineService | None = None
    ) -> None:
        self.db = db
        self.execution_queue = execution_queue
        self.service = service

    async def __call__(self, job: Job) -> None:
        if "triggerId" in job.data:
            await self._fire_schedule(job)
            return
        async with self.db.read() as conn:
            state = await ex_store.dispatch_state(conn, job.id)
        if state is None:
            log.warning("dispatch %s: no such execution; dropped", job.id)
            return
        status, archived = state
        if status != ex_store.PENDING:
            return
        if archived:
            async with self.db.write() as conn:
                await ex_store.fail_unclaimable(
                    conn, job.id, "The workflow was archived before this execution started"
                )
            return
        await self.execution_queue.add(job.id)

    async def _fire_schedule(self, job: Job) -> None:
        if self.service is None:
            raise RuntimeError("this dispatcher cannot start scheduled executions")
        slot_ms = slot_of(job.id)
        slot = (
            datetime.fromtimestamp(slot_ms / 1000, UTC) if slot_ms is not None else ex_store.now()
        )
        try:
            await self.service.execute(
                job.data["workflowId"],
                job.data.get("input") or {},
                idempotency_key=f"schedule:{job.data['triggerId']}:{slot.isoformat()}",
                trigger_id=job.data["triggerId"],
            )
        except (NotFound, Conflict) as exc:
            log.warning("schedule %s skipped: %s", job.data["triggerId"], exc)


class ExecutionRunner:
    """`workflow-execution` handler: claim the execution, then run it."""

    def __init__(
        self, db: Database, executor: Executor, *, lease_ms: int, max_deliveries: int
    ) -> None:
        self.db = db
        self.executor = executor
        self.lease_ms = lease_ms
        self.max_deliveries = max_deliveries
        self.owner = worker_id()

    async def __call__(self, job: Job) -> None:
        async with self.db.write() as conn:
            claim = await ex_store.claim(conn, job.id, owner=self.owner, lease_ms=self.lease_ms)
            if claim is None:
                # Finished, cancelled, unknown, or owned by a live worker. A cancelled one whose
                # owner died is finished here.
                await ex_store.cancel_unowned(conn, job.id)
                return
            if claim.token > self.max_deliveries:
                await ex_store.fail_unclaimable(
                    conn,
                    job.id,
                    f"Execution was interrupted {claim.token - 1} times (its worker crashed or "
                    f"stalled); giving up after {self.max_deliveries} deliveries",
                )
                return
            if claim.first_start:
                version = await self.executor.versions.get(claim.workflow_version_id, conn=conn)
                if ratelimit.has_limits(version.definition):
                    wait_ms = await ratelimit.wait_needed_ms(
                        conn, claim.workflow_id, version.definition
                    )
                    if wait_ms:
                        # Over a limit: the claim is rolled back, the execution stays pending
                        # and its job comes back later; no attempt is spent.
                        raise Delay(wait_ms, "rate limited")
        await self.executor.run(claim)
