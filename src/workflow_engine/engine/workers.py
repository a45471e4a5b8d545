"""The two job handlers: dispatch (check, then hand to the execution queue) and execution."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime

from workflow_engine import telemetry
from workflow_engine.batching import Batcher
from workflow_engine.domain.status import ExecutionStatus
from workflow_engine.engine import debounce, ratelimit
from workflow_engine.engine.alerts import Failures
from workflow_engine.engine.executor import Executor
from workflow_engine.engine.waits import WAKE_KEY
from workflow_engine.errors import Delay, DuplicateKey, NotFound, StorageUnavailable
from workflow_engine.ids import worker_id
from workflow_engine.queue.base import VERSION_KEY, Job, JobQueue
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import waits as wait_store
from workflow_engine.storage.db import Connection, Database

log = logging.getLogger(__name__)
ARCHIVED_BEFORE_START = "The workflow was archived before this execution started"


class Dispatcher:
    """`workflow-dispatch` handler: hands the execution to the execution queue. A job that
    carries the execution's version goes on as it is (the claim checks the workflow is live);
    one without (reconciler, resumes, debounces) reads it, and goes on only if the execution is
    pending and its workflow live."""

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
        async with _reported("dispatch", job):
            await self._dispatch(job)

    async def _dispatch(self, job: Job) -> None:
        wake = job.data.get(WAKE_KEY)
        if isinstance(wake, str):
            await self._timer(wake)
            return
        burst = job.data.get(debounce.DEBOUNCE_KEY)
        if isinstance(burst, dict):
            await self._debounced(str(burst.get("trigger")), str(burst.get("key")))
            return
        version_id = job.data.get(VERSION_KEY)
        if isinstance(version_id, str):
            # Queued with its version (and priority) by whoever inserted the row: nothing to
            # read. The claim is the check: it does not take an execution that has not started
            # and whose workflow was archived since; the runner fails it (ExecutionRunner).
            await self.execution_queue.add(job.id, {VERSION_KEY: version_id}, priority=job.priority)
            return
        state = await self._states(job.id)
        if state is None:
            log.warning("dispatch %s: no such execution; dropped", job.id)
            return
        if state.status != ex_store.PENDING:
            return
        if state.archived:
            if self.failures is not None:
                await self.failures.fail(job.id, state.workflow_version_id, ARCHIVED_BEFORE_START)
            else:
                async with self.db.write() as conn:
                    await ex_store.fail_unclaimable(conn, job.id, ARCHIVED_BEFORE_START)
            return
        # The version (immutable) rides along so the runner knows its rate limits before claiming.
        await self.execution_queue.add(
            job.id, {VERSION_KEY: state.workflow_version_id}, priority=state.priority
        )

    async def _debounced(self, trigger_id: str, key: str) -> None:
        """A debounce timer: start the burst's execution if it is due (only the caller whose
        DELETE takes the burst does); put the job back if a later call pushed it back."""
        fired = await debounce.fire(self.db, trigger_id, key)
        if isinstance(fired, str):
            await self.execution_queue.add(fired)
        elif isinstance(fired, datetime):
            raise Delay(max(1, int((fired - ex_store.now()).total_seconds() * 1000)), "not due yet")

    async def _timer(self, execution_id: str) -> None:
        """A durable wait's timer job: wake the execution if it is due (only the caller whose
        update flips it from `waiting` queues it); put the job back if it came early."""
        async with self.db.write() as conn:
            due = await wait_store.wake_if_due(conn, execution_id)
        if due is True:
            state = await self._states(execution_id)
            if state is None:
                return
            # Back in the backlog with its priority (and its version, as a dispatch gives it).
            await self.execution_queue.add(
                execution_id, {VERSION_KEY: state.workflow_version_id}, priority=state.priority
            )
        elif isinstance(due, datetime):
            raise Delay(max(1, int((due - ex_store.now()).total_seconds() * 1000)), "not due yet")


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
        async with _reported("execution", job):
            claim = await self._claim(job)
            if claim is not None:
                await self.executor.run(claim)

    async def _claim(self, job: Job) -> ex_store.Claim | None:
        if await self._unlimited(job.data.get(VERSION_KEY)):
            # No rate limit to check inside the claim: claims of concurrent jobs go together in
            # one UPDATE, without BEGIN/COMMIT.
            claim = await self._claim_shielded(job.id)
            if claim is None:
                await self._unclaimed(job.id)
                return None
            if claim.deliveries > self.max_deliveries:
                if await self.failures.fail(*self._poison(claim)):
                    await self._gave_up(claim)
                return None
            return claim
        async with self.db.write() as conn:
            claim = await ex_store.claim(conn, job.id, owner=self.owner, lease_ms=self.lease_ms)
            if claim is None:
                gave_up, alert = None, await self._unclaimed_in(conn, job.id)
            elif claim.deliveries <= self.max_deliveries:
                if claim.first_start:
                    version = await self.executor.versions.get(claim.workflow_version_id, conn=conn)
                    definition = version.definition
                    if ratelimit.has_limits(definition):
                        wait_ms = await ratelimit.wait_needed_ms(
                            conn,
                            claim.workflow_id,
                            definition,
                            execution_id=claim.execution_id,
                            input=claim.input,
                        )
                        if wait_ms:
                            # Over a limit: the claim is rolled back, the execution stays
                            # pending and its job comes back later; no attempt is spent.
                            raise Delay(wait_ms, "rate limited")
                return claim
            else:
                failed, alert = await self.failures.fail_in(conn, *self._poison(claim))
                gave_up = claim if failed else None
        await self.failures.alerts.enqueue(alert)
        if gave_up is not None:
            await self._gave_up(gave_up)
        return None

    async def _unclaimed(self, execution_id: str) -> None:
        async with self.db.write() as conn:
            alert = await self._unclaimed_in(conn, execution_id)
        await self.failures.alerts.enqueue(alert)

    async def _unclaimed_in(self, conn: Connection, execution_id: str) -> str | None:
        """The execution was not claimable: finished, cancelled, unknown, owned by a live
        worker, or not started yet and its workflow archived since it was queued. A cancelled
        one whose owner died is finished here, an archived one failed (with its failure
        alerts): the alert to enqueue once the caller commits."""
        await ex_store.cancel_unowned(conn, execution_id)
        version_id = await ex_store.archived_before_start(conn, execution_id)
        if version_id is None:
            return None
        _, alert = await self.failures.fail_in(
            conn, execution_id, version_id, ARCHIVED_BEFORE_START
        )
        return alert

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
        return claim.execution_id, claim.workflow_version_id, self._gave_up_error(claim)

    def _gave_up_error(self, claim: ex_store.Claim) -> str:
        return (
            f"Execution was interrupted {claim.deliveries - 1} times (its worker crashed or "
            f"stalled); giving up after {self.max_deliveries} deliveries"
        )

    async def _gave_up(self, claim: ex_store.Claim) -> None:
        """An execution failed for too many deliveries reached its final status: tell the
        telemetry (its trace's root span, an error event), as the executor does for the others."""
        name, number = claim.workflow_id, None
        with contextlib.suppress(Exception):  # the version may be what keeps failing it
            version = await self.executor.versions.get(claim.workflow_version_id)
            name, number = version.definition.name, version.number
        telemetry.execution_finished(
            telemetry.ExecutionEnd(
                execution_id=claim.execution_id,
                workflow_id=claim.workflow_id,
                workflow_name=name,
                version=number,
                status=ExecutionStatus.FAILED.value,
                started_at=claim.started_at,
                error=self._gave_up_error(claim),
                retries=0,
            )
        )


@contextlib.asynccontextmanager
async def _reported(queue: str, job: Job) -> AsyncIterator[None]:
    """An exception escaping a job handler is logged with its traceback (and so reaches Sentry
    when SENTRY_DSN is set): the queue only counts the job failed. Control flow (Delay, a
    stop), an unreachable database and a write found already made (the job or the reconciler
    tries again, from what is stored) are not errors of the code: warnings."""
    try:
        yield
    except (Delay, asyncio.CancelledError):
        raise
    except (StorageUnavailable, DuplicateKey) as exc:
        log.warning("%s job %s: %s", queue, job.id, exc)
        raise
    except Exception:
        log.exception("%s job %s failed", queue, job.id)
        raise
