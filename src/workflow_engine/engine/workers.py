"""The two job handlers: dispatch (check, then hand to the execution queue) and execution."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from workflow_engine.batching import Batcher
from workflow_engine.engine import ratelimit
from workflow_engine.engine.alerts import Failures
from workflow_engine.engine.executor import Executor
from workflow_engine.errors import Delay, NotFound
from workflow_engine.ids import worker_id
from workflow_engine.queue.base import Job, JobQueue
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage.db import Database

log = logging.getLogger(__name__)
VERSION_KEY = "workflowVersionId"
"""Execution job data: the execution's workflow version (absent in jobs the reconciler queues)."""


class Dispatcher:
    """`workflow-dispatch` handler: the execution must exist, be pending and its workflow live."""

    def __init__(
        self, db: Database, execution_queue: JobQueue, *, failures: Failures | None = None
    ) -> None:
        self.db = db
        self.execution_queue = execution_queue
        self.failures = failures
        """Fails executions that cannot run (with their failure alerts); None: no alerts."""
        self._states = Batcher(self._read_states, name="dispatch reads")

    async def _read_states(self, ids: list[str]) -> list[ex_store.DispatchState | None]:
        async with self.db.read() as conn:
            found = await ex_store.dispatch_states(conn, ids)
        return [found.get(execution_id) for execution_id in ids]

    async def __call__(self, job: Job) -> None:
        state = await self._states(job.id)
        if state is None:
            log.warning("dispatch %s: no such execution; dropped", job.id)
            return
        if state.status != ex_store.PENDING:
            return
        if state.archived:
            error = "The workflow was archived before this execution started"
            if self.failures is not None:
                await self.failures.fail(job.id, state.workflow_version_id, error)
            else:
                async with self.db.write() as conn:
                    await ex_store.fail_unclaimable(conn, job.id, error)
            return
        # The version (immutable) rides along so the runner knows its rate limits before claiming.
        await self.execution_queue.add(job.id, {VERSION_KEY: state.workflow_version_id})


class ExecutionRunner:
    """`workflow-execution` handler: claim the execution, then run it."""

    def __init__(
        self, db: Database, executor: Executor, *, lease_ms: int, max_deliveries: int
    ) -> None:
        self.db = db
        self.executor = executor
        self.failures = Failures(db, executor.versions, executor.alerts)
        self.lease_ms = lease_ms
        self.max_deliveries = max_deliveries
        self.owner = worker_id()
        self._claims = Batcher(self._claim_many, name="claims")

    async def __call__(self, job: Job) -> None:
        claim = await self._claim(job)
        if claim is not None:
            await self.executor.run(claim)

    async def _claim(self, job: Job) -> ex_store.Claim | None:
        if await self._unlimited(job.data.get(VERSION_KEY)):
            # No rate limit to check inside the claim: claims of concurrent jobs go together in
            # one UPDATE, without BEGIN/COMMIT.
            claim = await self._claim_shielded(job.id)
            if claim is None:
                async with self.db.autocommit() as conn:
                    await ex_store.cancel_unowned(conn, job.id)
                return None
            if claim.deliveries > self.max_deliveries:
                await self.failures.fail(*self._poison(claim))
                return None
            return claim
        async with self.db.write() as conn:
            claim = await ex_store.claim(conn, job.id, owner=self.owner, lease_ms=self.lease_ms)
            if claim is None:
                # Finished, cancelled, unknown, or owned by a live worker. A cancelled one
                # whose owner died is finished here.
                await ex_store.cancel_unowned(conn, job.id)
                return None
            if claim.deliveries > self.max_deliveries:
                alert = await self.failures.fail_in(conn, *self._poison(claim))
            elif claim.first_start:
                version = await self.executor.versions.get(claim.workflow_version_id, conn=conn)
                if ratelimit.has_limits(version.definition):
                    definition = version.definition
                    wait_ms = await ratelimit.wait_needed_ms(conn, claim.workflow_id, definition)
                    if wait_ms:
                        # Over a limit: the claim is rolled back, the execution stays pending
                        # and its job comes back later; no attempt is spent.
                        raise Delay(wait_ms, "rate limited")
                return claim
            else:
                return claim
        await self.failures.alerts.enqueue(alert)
        return None

    async def _claim_shielded(self, execution_id: str) -> ex_store.Claim | None:
        """A claim whose caller is cancelled meanwhile (shutdown) may still be made by its
        batch: then its lease is released at once, so the execution does not wait out a lease
        with nobody running it."""
        claiming = asyncio.ensure_future(self._claims(execution_id))
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    claim = await claiming
                    if claim is not None:
                        async with self.db.autocommit() as conn:
                            await ex_store.release_lease(conn, execution_id, claim.token)
            raise

    async def _claim_many(self, ids: list[str]) -> list[ex_store.Claim | None]:
        async with self.db.autocommit() as conn:
            found = await ex_store.claim_many(conn, ids, owner=self.owner, lease_ms=self.lease_ms)
        # One claim, one runner: an id twice in a batch (a job delivered again while its first
        # claim waits) gets its claim once.
        return [found.pop(execution_id, None) for execution_id in ids]

    async def _unlimited(self, version_id: object) -> bool:
        """True when the job names a version (cached after the first) without rate limits."""
        if not isinstance(version_id, str):
            return False
        try:
            version = await self.executor.versions.get(version_id)
        except NotFound:
            return False
        return not ratelimit.has_limits(version.definition)

    def _poison(self, claim: ex_store.Claim) -> tuple[str, str, str]:
        """An execution whose worker died at every delivery: failed rather than tried forever."""
        return (
            claim.execution_id,
            claim.workflow_version_id,
            f"Execution was interrupted {claim.deliveries - 1} times (its worker crashed or "
            f"stalled); giving up after {self.max_deliveries} deliveries",
        )
