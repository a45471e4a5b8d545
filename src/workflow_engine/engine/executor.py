"""Runs one claimed execution: its step graph, with retries, timeouts, cancel and checkpoints.

The run loop is small on purpose: the graph says which steps can start (`domain.graph`), a
`StepRunner` takes one step through its tries, `checkpoints` decide what each outcome writes and
tells, and the `Journal` writes it (fenced, group-committed) and publishes it. A step's result is
committed before any step that needs it starts; a redelivered execution skips the steps already
`completed` or `skipped`, and runs the others again with the same idempotency keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from workflow_engine import metrics, telemetry
from workflow_engine.domain.definition import StepDefinition
from workflow_engine.domain.graph import Readiness, ReadySteps
from workflow_engine.domain.retry import RetryPolicy
from workflow_engine.domain.status import ExecutionStatus, StepStatus
from workflow_engine.engine import checkpoints as cp
from workflow_engine.engine import templates
from workflow_engine.engine.alerts import FailedStep, Failure, FailureAlerts
from workflow_engine.engine.attempts import Attempt, StepRunner, StepSpec
from workflow_engine.engine.branches import (
    Branches,
    Completed,
    Failed,
    Halt,
    Outcome,
    Skipped,
    StepStopped,
    Stopped,
)
from workflow_engine.engine.branches import (
    Parked as StepParked,
)
from workflow_engine.engine.cancel import CancelFlag, CancelSignals
from workflow_engine.engine.journal import Journal, jsonable
from workflow_engine.engine.llm_limits import LlmMetering
from workflow_engine.engine.secrets import Secrets
from workflow_engine.engine.versions import LoadedVersion, VersionCache
from workflow_engine.engine.waits import WaitRunner, parks
from workflow_engine.errors import LeaseLost, StepError
from workflow_engine.events.bus import EventBus
from workflow_engine.ids import worker_id
from workflow_engine.steps.llm import LlmServer
from workflow_engine.steps.registry import StepRegistry
from workflow_engine.storage import executions as store
from workflow_engine.storage import waits as wait_store
from workflow_engine.storage.db import Database, Row
from workflow_engine.storage.waits import Parked, WaitSpec
from workflow_engine.storage.writer import ExecutionWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutorConfig:
    lease_ms: int = 30_000
    execution_timeout_ms: int = 300_000
    retry_jitter: float = 0.0
    """Random share added to each retry delay (see RetryPolicy.jitter)."""
    owner: str = field(default_factory=worker_id)
    """Who claims the child executions this executor runs itself."""
    durable_delay_min_ms: int = 5_000
    """Delays this long or longer park the execution (engine/waits.py)."""


@dataclass
class Run:
    """One delivery of one execution."""

    execution_id: str
    workflow_id: str
    token: int
    version: LoadedVersion
    input: Any
    started_at: datetime
    cancel: CancelFlag
    journal: Journal
    previous: dict[str, Row]
    """Step rows stored before this delivery (an earlier one, or carried over by a re-run)."""
    states: dict[str, cp.StepState] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """`{key: {"output": ...}}` of the steps completed or skipped: the templates' `steps`."""
    retries: int = 0
    failed_step: FailedStep | None = None
    """The step whose failure failed the execution (the first one), for its failure alert and
    the telemetry."""
    waited_ms: int = 0
    """Time spent `waiting` before this delivery: not counted toward the execution's timeout."""
    waits: dict[str, Row] = field(default_factory=dict)
    """The registered waits (storage/waits.py) by step key."""
    parked: dict[str, WaitSpec] = field(default_factory=dict)
    """Steps of this delivery that wait (engine/waits.py): the execution parks on them."""
    ready: ReadySteps = field(init=False)
    """Which steps can start (domain/graph.py), from the rows stored before this delivery."""

    def __post_init__(self) -> None:
        finished = {key: StepStatus(row["status"]) for key, row in self.previous.items()}
        self.ready = self.version.graph.tracker(finished)

    def set_output(self, key: str, output: Any) -> None:
        self.outputs[key] = {"output": output}

    def count_retry(self) -> None:
        self.retries += 1

    def state(self, ref: cp.StepRef) -> cp.StepState:
        """The step's state in this delivery, from its stored row if it has one."""
        found = self.states.get(ref.key)
        if found is None:
            row = self.previous.get(ref.key)
            found = cp.StepState(ref)
            if row is not None:
                found.status = StepStatus(row["status"])
                found.attempt = row["retry_count"] + 1
                found.started_at = row["started_at"]
                found.input = row["input"]
                found.progress = row.get("progress")
            self.states[ref.key] = found
        return found


class Executor:
    def __init__(
        self,
        *,
        db: Database,
        registry: StepRegistry,
        bus: EventBus,
        cancels: CancelSignals,
        http: httpx.AsyncClient,
        secrets: Secrets,
        config: ExecutorConfig,
        versions: VersionCache | None = None,
        alerts: FailureAlerts | None = None,
        llm: LlmServer | None = None,
        metering: LlmMetering | None = None,
    ) -> None:
        from workflow_engine.engine.children import ChildExecutions
        from workflow_engine.engine.mapping import MapRunner

        self.db = db
        self.registry = registry
        self.bus = bus
        self.cancels = cancels
        self.http = http
        self.secrets = secrets
        self.config = config
        self.versions = versions or VersionCache(db)
        self.alerts = alerts or FailureAlerts(db)
        self.writer = ExecutionWriter(db, lease_ms=config.lease_ms)
        self.steps = StepRunner(
            registry=registry,
            secrets=secrets,
            http=http,
            llm=llm,
            metering=metering or LlmMetering(db),
        )
        self.maps = MapRunner(self)
        self.children = ChildExecutions(self)
        self.waits = WaitRunner(self, durable_delay_min_ms=config.durable_delay_min_ms)

    # --- entry point ----------------------------------------------------------------------------

    async def run(self, claim: store.Claim) -> ExecutionStatus | None:
        """Run a claimed execution to a final status; None if the lease was lost on the way."""
        rows: list[Row] = []
        waits: list[Row] = []
        last_seq = 0
        # A first delivery of a new execution has no step rows or events yet: nothing to read.
        if not claim.first_start or claim.rerun_of_id is not None:
            async with self.db.read() as conn:
                rows = await store.list_steps(conn, claim.execution_id)
                last_seq = await store.last_event_seq(conn, claim.execution_id)
                if not claim.first_start:
                    waits = await wait_store.list_waits(conn, claim.execution_id)
        version = await self.versions.get(claim.workflow_version_id)
        cancel = self.cancels.watch(claim.execution_id)
        run = Run(
            execution_id=claim.execution_id,
            workflow_id=claim.workflow_id,
            token=claim.token,
            version=version,
            input=claim.input,
            started_at=claim.started_at,
            cancel=cancel,
            journal=Journal(
                writer=self.writer,
                bus=self.bus,
                execution_id=claim.execution_id,
                workflow_id=claim.workflow_id,
                token=claim.token,
                last_seq=last_seq,
                cancel=cancel,
                retry_for_s=self.config.lease_ms / 2000,
            ),
            previous={row["step_key"]: row for row in rows},
            waited_ms=claim.waited_ms_now(),
            waits={row["step_key"]: row for row in waits},
        )
        for row in rows:
            finished = row["status"] in (StepStatus.COMPLETED, StepStatus.SKIPPED)
            if finished and row["step_key"] in version.step_ids:  # not an item of a map
                run.set_output(row["step_key"], row["output"])
        heartbeat = asyncio.create_task(self._heartbeat(run))
        try:
            return await self._run(run)
        except LeaseLost:
            metrics.lease_lost()
            log.warning("execution %s: lease lost, another worker owns it now", run.execution_id)
            return None
        except asyncio.CancelledError:
            # Handed back (shutdown past its grace period): let the next worker take it at once
            # rather than after the lease runs out.
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(2):
                    async with self.db.write() as conn:
                        await store.release_lease(conn, run.execution_id, run.token)
            raise
        finally:
            heartbeat.cancel()
            self.cancels.unwatch(run.execution_id, run.cancel)
            await asyncio.gather(heartbeat, return_exceptions=True)

    async def _run(self, run: Run) -> ExecutionStatus:
        definition = run.version.definition
        label = f"workflow '{definition.name}' v{run.version.number}"
        run.journal.defer(
            cp.execution_started(label, run.token, run.input, after_wait=bool(run.waits))
        )
        halt = Halt()
        while True:
            await self._steps(run, halt)
            if halt.is_set or not run.parked:
                break
            parked = await self.waits.park(run)
            if parked == Parked.WAITING:
                return ExecutionStatus.WAITING
            if parked == Parked.CANCEL:
                halt.set("Cancelled", status=ExecutionStatus.CANCELLED)
                self._stop_running(run, halt)
                break
            # A wait was met as it registered (an early event): go on in this delivery.
            for key in list(run.parked):
                run.parked.pop(key)
                state = run.states[key]
                self._ended(run, state, self.waits.resolve(run, state, run.waits[key]), halt)
        status, output, error = ExecutionStatus.COMPLETED, None, None
        if halt.is_set:
            status, error = halt.status, halt.error
        else:
            try:
                output = await self._output(run)
            except StepError as exc:
                status, error = ExecutionStatus.FAILED, f"Output template failed: {exc}"
        finished = cp.execution_finished(
            status, run.started_at, output=output, error=error, retries=run.retries
        )
        alert = None
        if status == ExecutionStatus.FAILED and definition.onFailure is not None:
            # The alert's execution is stored by the same (fenced) write as the failure.
            failure = Failure(run.execution_id, run.workflow_id, definition, error, run.failed_step)
            alert = await self.alerts.plan(failure)
            if alert is not None:
                finished = dataclasses.replace(
                    finished,
                    logs=(*finished.logs, alert.log),
                    starts=() if alert.row is None else (alert.row,),
                )
        await run.journal.write(finished)
        if alert is not None:
            await self.alerts.enqueue(alert.execution_id)
        metrics.execution_finished(definition.name, status, run.started_at)
        telemetry.execution_finished(
            telemetry.ExecutionEnd(
                execution_id=run.execution_id,
                workflow_id=run.workflow_id,
                workflow_name=definition.name,
                version=run.version.number,
                status=status.value,
                started_at=run.started_at,
                error=error,
                failed_step=(
                    run.failed_step.step_key
                    if run.failed_step is not None and status == ExecutionStatus.FAILED
                    else None
                ),
                retries=run.retries,
            )
        )
        return status

    # --- the step graph -------------------------------------------------------------------------

    async def _steps(self, run: Run, halt: Halt) -> None:
        """Run the graph until every step has finished or the execution halts (a step failed
        after its retries, a cancel, the execution's timeout); then every step still running
        has stopped and its row says why."""
        definition = run.version.definition
        timeout_ms = definition.timeoutMs or self.config.execution_timeout_ms
        loop = asyncio.get_running_loop()
        elapsed_s = (datetime.now(UTC) - run.started_at).total_seconds() - run.waited_ms / 1000
        # A cancel and the timeout set the halt from outside this loop, so that a step run
        # inline (below) stops as promptly as one in a task.
        timer = loop.call_at(
            loop.time() + timeout_ms / 1000 - elapsed_s,
            halt.set,
            f"Execution timed out after {timeout_ms} ms",
        )
        stop_watching = run.cancel.when_set(
            lambda: halt.set("Cancelled", status=ExecutionStatus.CANCELLED)
        )
        branches: Branches[StepDefinition] = Branches()
        try:
            while True:
                room = definition.parallelism - len(branches)
                ready = [] if halt.is_set else self._ready(run, room, halt)
                started = cp.now()
                for _step, state in ready:
                    # Steps started together start at one instant (kept by a retry, a resume).
                    state.started_at = state.started_at or started
                if not branches and len(ready) == 1:
                    # A step alone (as in every step list without `needs`): run it here, no
                    # task and no scheduling turn in between.
                    step, state = ready[0]
                    self._ended(run, state, await self._branch(run, step, state, halt), halt)
                    continue
                for step, state in ready:
                    branches.start(step, self._branch(run, step, state, halt))
                if not branches:
                    break
                if not ready:
                    # Nothing about to write: what is deferred goes out now, not when a long
                    # sibling ends.
                    await run.journal.flush()
                for step, outcome in await branches.next():
                    self._ended(run, run.states[step.key], outcome, halt)
        finally:
            timer.cancel()
            stop_watching()
        if halt.is_set or not run.parked:
            self._stop_running(run, halt)

    def _ready(self, run: Run, room: int, halt: Halt) -> list[tuple[StepDefinition, cp.StepState]]:
        """The steps to start now: those whose needs are met, in list order, at most `room`.
        Steps whose explicit needs were all skipped are skipped here and now."""
        chosen: list[tuple[StepDefinition, cp.StepState]] = []
        while len(chosen) < room:
            found = run.ready.take()
            if found is None:
                break
            step, readiness = found
            state = run.state(self._ref(run, step))
            if readiness is Readiness.SKIP:
                self._ended(run, state, Skipped("all the steps it needs were skipped"), halt)
                continue
            chosen.append((step, state))
        return chosen

    async def _branch(
        self, run: Run, step: StepDefinition, state: cp.StepState, halt: Halt
    ) -> Outcome:
        try:
            if step.type == "map":
                return await self.maps.run(run, step, state, halt)
            if parks(step):
                return await self.waits.run(run, step, state, halt)
            return await self.steps.run(step, state, self.attempt(run, step, halt))
        except StepStopped:
            return Stopped()

    def attempt(
        self, run: Run, spec: StepSpec, halt: Halt, extra: dict[str, Any] | None = None
    ) -> Attempt:
        definition = run.version.definition
        context = self.context(run)
        if extra:
            context.update(extra)
        return Attempt(
            execution_id=run.execution_id,
            workflow_id=run.workflow_id,
            journal=run.journal,
            halt=halt,
            policy=RetryPolicy(
                max_attempts=spec.retryMaxAttempts or definition.retryMaxAttempts,
                backoff_ms=spec.retryBackoffMs
                if spec.retryBackoffMs is not None
                else definition.retryBackoffMs,
                jitter=self.config.retry_jitter,
            ),
            context=context,
            count_retry=run.count_retry,
            run_child=lambda state: self.children.runner(run, state, halt),
            token_budget=definition.tokenBudget,
            tools=lambda state: self.children.tools(run, state, halt),
        )

    def _ended(self, run: Run, state: cp.StepState, outcome: Outcome, halt: Halt) -> None:
        """Record how a step ended (committed with the next write); a failure halts the rest."""
        key = state.ref.key
        if isinstance(outcome, Completed):
            run.set_output(key, outcome.output)
            run.journal.defer(cp.step_completed(state, outcome.output))
            run.ready.finished(key, StepStatus.COMPLETED)
        elif isinstance(outcome, Skipped):
            run.set_output(key, None)
            run.journal.defer(cp.step_skipped(state, outcome.reason))
            run.ready.finished(key, StepStatus.SKIPPED)
        elif isinstance(outcome, Failed):
            run.journal.defer(cp.step_failed(state, outcome.stored_input, outcome.error))
            if run.failed_step is None and not halt.is_set:
                run.failed_step = FailedStep(state.ref.step_id, key, outcome.error)
            name = state.ref.name
            halt.set(
                f"Cancelled: step '{name}' failed", error=f"Step '{name}' failed: {outcome.error}"
            )
        elif isinstance(outcome, StepParked):
            run.parked[key] = outcome.wait
        # Stopped: its row is marked once every branch has stopped (`_stop_running`).

    @staticmethod
    def _stop_running(run: Run, halt: Halt) -> None:
        """Every step row still `running` ends `failed`, saying why (no `running` row is left
        behind in a finished execution)."""
        for state in run.states.values():
            if state.status == StepStatus.RUNNING:
                run.journal.defer(cp.step_stopped(state, halt.reason or "Stopped"))

    async def _output(self, run: Run) -> Any:
        """The workflow's `output` template, else the output of the last step (in list order)
        that completed."""
        definition = run.version.definition
        if definition.output is not None:
            return jsonable(await templates.render_async(definition.output, self.context(run)))
        last = run.ready.last_completed()
        found = run.outputs.get(last.key) if last is not None else None
        return found["output"] if found is not None else None

    def _ref(self, run: Run, step: StepDefinition) -> cp.StepRef:
        return cp.StepRef(
            key=step.key,
            step_id=run.version.step_ids[step.key],
            position=run.version.positions[step.key],
            name=step.display_name,
        )

    def context(self, run: Run) -> dict[str, Any]:
        return {
            "input": run.input,
            "steps": dict(run.outputs),
            "execution": {
                "id": run.execution_id,
                "workflowId": run.workflow_id,
                "workflowVersionId": run.version.id,
                "version": run.version.number,
                "startedAt": run.started_at.isoformat(),
            },
            # Masked: the real values are rendered only into the fields of a step type that may
            # hold them (StepRunner.render_config).
            "secrets": self.secrets.masked(),
        }

    # --- lease ----------------------------------------------------------------------------------

    async def _heartbeat(self, run: Run) -> None:
        """Renew the lease while steps run, and pick up cancel requests made in the database."""
        interval = self.config.lease_ms / 3 / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                requested = await run.journal.renew()
            except LeaseLost:
                log.warning("execution %s: lease lost during a step", run.execution_id)
                run.cancel.set()
                return
            except Exception:
                log.exception("execution %s: lease renewal failed; will retry", run.execution_id)
                continue
            if requested:
                run.cancel.set()
