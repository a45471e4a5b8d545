"""The two job handlers: dispatch (check, then hand to the execution queue) and execution."""

from __future__ import annotations

import logging
import os
import socket

from workflow_engine.engine import ratelimit
from workflow_engine.engine.executor import Executor
from workflow_engine.errors import Delay, NotFound
from workflow_engine.queue.base import Job, JobQueue
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.db import Database

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Dispatcher:
    """`workflow-dispatch` handler: the execution must exist, be pending and its workflow live."""

    def __init__(self, db: Database, execution_queue: JobQueue) -> None:
        self.db = db
        self.execution_queue = execution_queue

    async def __call__(self, job: Job) -> None:
        async with self.db.read() as conn:
            try:
                row = await ex_store.get_execution(conn, job.id)
            except NotFound:
                log.warning("dispatch %s: no such execution; dropped", job.id)
                return
            if row["status"] != ex_store.PENDING:
                return
            workflow = await wf_store.get_workflow(conn, row["workflow_id"])
        if workflow["archived_at"] is not None:
            async with self.db.write() as conn:
                await ex_store.fail_unclaimable(
                    conn, job.id, "The workflow was archived before this execution started"
                )
            return
        await self.execution_queue.add(job.id)


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
        async with self.db.read() as conn:
            try:
                row = await ex_store.get_execution(conn, job.id)
            except NotFound:
                log.warning("execution job %s: no such execution; dropped", job.id)
                return
        version = await self.executor.versions.get(row["workflow_version_id"])
        limited = row["status"] == ex_store.PENDING and ratelimit.has_limits(version.definition)
        async with self.db.write() as conn:
            if limited:
                wait_ms = await ratelimit.wait_needed_ms(
                    conn, row["workflow_id"], version.definition
                )
                if wait_ms:
                    # Over a limit: stay pending and come back later; no attempt is spent.
                    raise Delay(wait_ms, "rate limited")
            claim = await ex_store.claim(conn, job.id, owner=self.owner, lease_ms=self.lease_ms)
            if claim is None:
                # Finished, cancelled, or owned by a live worker. A cancelled one whose owner died
                # is finished here.
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
        await self.executor.run(claim)
