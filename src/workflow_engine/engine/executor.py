"""Runs one claimed execution: its steps in order, with retries, timeouts, cancel and checkpoints.

Every write goes through the group-committing `ExecutionWriter`, fenced, so only the current
owner of the execution writes. A step's result is committed before the next step starts;
a redelivered execution skips the steps already `completed` or `skipped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from workflow_engine.domain.definition import StepDefinition
from workflow_engine.domain.retry import RetryPolicy, decide
from workflow_engine.domain.status import ExecutionStatus, StepStatus
from workflow_engine.engine import templates
from workflow_engine.engine.cancel import CancelSignals
from workflow_engine.engine.secrets import Secrets
from workflow_engine.engine.versions import LoadedVersion, VersionCache
from workflow_engine.errors import (
    ExecutionCancelled,
    LeaseLost,
    NonRetryableStepError,
    StepError,
    StepTimeout,
)
from workflow_engine.events.bus import Event, EventBus
from workflow_engine.ids import new_id
from workflow_engine.steps.base import StepContext
from workflow_engine.steps.registry import StepRegistry
from workflow_engine.storage import executions as store
from workflow_engine.storage.db import Database
from workflow_engine.storage.writer import ExecutionWriter, Finish, StepWrite, WriteOp

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ExecutorConfig:
    lease_ms: int = 30_000
    execution_timeout_ms: int = 300_000


@dataclass
class _Run:
    """The state of one delivery of one execution."""

    execution_id: str
    workflow_id: str
    token: int
    version: LoadedVersion
    input: Any
    started_at: datetime
    cancel: asyncio.Event
    seq: int = 0
    last_log_at: datetime = field(default_factory=lambda: datetime.min.replace(tzinfo=UTC))
    outputs: dict[str, Any] = field(default_factory=dict)
    last_output: Any = None
    retries: int = 0
    deferred: tuple[WriteOp, list[Event]] | None = None
    """A step's completion, written with the execution's next write (see `_defer`)."""
    step_rows: set[str] = field(default_factory=set)
    """Keys of the steps that have a row (written by this or an earlier delivery)."""
    current: tuple[dict[str, Any], datetime, str] | None = None
    """The step being tried: (row key fields, first start, display name)."""


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
    ) -> None:
        self.db = db
        self.registry = registry
        self.bus = bus
        self.cancels = cancels
        self.http = http
        self.secrets = secrets
        self.config = config
        self.versions = versions or VersionCache(db)
        self.writer = ExecutionWriter(db, lease_ms=config.lease_ms)

    # --- entry point ----------------------------------------------------------------------------

    async def run(self, claim: store.Claim) -> ExecutionStatus | None:
        """Run a claimed execution to a final status; None if the lease was lost on the way."""
        done: list[Any] = []
        last_seq = 0
        # A first delivery of a new execution has no step rows or events yet: nothing to read.
        if not claim.first_start or claim.rerun_of_id is not None:
            async with self.db.read() as conn:
                done = await store.list_steps(conn, claim.execution_id)
                last_seq = await store.last_event_seq(conn, claim.execution_id)
        version = await self.versions.get(claim.workflow_version_id)
        run = _Run(
            execution_id=claim.execution_id,
            workflow_id=claim.workflow_id,
            token=claim.token,
            version=version,
            input=claim.input,
            started_at=claim.started_at,
            cancel=self.cancels.watch(claim.execution_id),
            seq=last_seq,
        )
        run.step_rows = {step_row["step_key"] for step_row in done}
        for step_row in done:
            if step_row["status"] in (StepStatus.COMPLETED, StepStatus.SKIPPED):
                run.outputs[step_row["step_key"]] = step_row["output"]
                if step_row["status"] == StepStatus.COMPLETED:
                    run.last_output = step_row["output"]
        heartbeat = asyncio.create_task(self._heartbeat(run))
        try:
            return await self._run(run, {r["step_key"]: r for r in done})
        except LeaseLost:
            log.warning("execution %s: lease lost, another worker owns it now", run.execution_id)
            return None
        except asyncio.CancelledError:
            # Handed back (shutdown past its grace period): let the next worker take it at once
            # rather than after the lease runs out.
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(2):
                    await self._release(run)
            raise
        finally:
            heartbeat.cancel()
            self.cancels.unwatch(run.execution_id, run.cancel)
            await asyncio.gather(heartbeat, return_exceptions=True)

    async def _run(self, run: _Run, step_rows: dict[str, Any]) -> ExecutionStatus:
        definition = run.version.definition
        timeout_ms = definition.timeoutMs or self.config.execution_timeout_ms
        if run.token == 1:  # the first delivery (store.Claim.first_start)
            logs = [("info", f"Execution started ({self._label(run)})", None)]
            events = [("started", {"input": run.input, "status": "running"})]
        else:
            logs = [
                ("warn", f"Execution resumed after an interruption (delivery {run.token})", None)
            ]
            events = []
        self._defer(run, step=None, logs=logs, events=events)
        elapsed_ms = (datetime.now(UTC) - run.started_at).total_seconds() * 1000
        try:
            async with asyncio.timeout(max(timeout_ms - elapsed_ms, 0) / 1000):
                for position, step in enumerate(definition.steps):
                    previous = step_rows.get(step.key)
                    if previous and previous["status"] in (
                        StepStatus.COMPLETED,
                        StepStatus.SKIPPED,
                    ):
                        continue
                    if run.cancel.is_set():
                        raise ExecutionCancelled()
                    failed = await self._step(run, step, position, previous)
                    if failed is not None:
                        await self._finish(run, ExecutionStatus.FAILED, error=failed)
                        return ExecutionStatus.FAILED
        except ExecutionCancelled:
            await self._abort_step(run, "Cancelled")
            await self._finish(run, ExecutionStatus.CANCELLED, error="Cancelled")
            return ExecutionStatus.CANCELLED
        except TimeoutError:
            error = f"Execution timed out after {timeout_ms} ms"
            await self._abort_step(run, error)
            await self._finish(run, ExecutionStatus.FAILED, error=error)
            return ExecutionStatus.FAILED
        await self._finish(run, ExecutionStatus.COMPLETED, output=run.last_output)
        return ExecutionStatus.COMPLETED

    # --- one step -------------------------------------------------------------------------------

    async def _step(
        self, run: _Run, step: StepDefinition, position: int, previous: Any
    ) -> str | None:
        """Run one step through its tries; returns the error that fails the execution, if any."""
        definition = run.version.definition
        step_id = run.version.step_ids[step.key]
        where = {"step_id": step_id, "step_key": step.key, "position": position}
        name = step.display_name
        context = self._context(run)
        policy = RetryPolicy(
            max_attempts=step.retryMaxAttempts or definition.retryMaxAttempts,
            backoff_ms=step.retryBackoffMs
            if step.retryBackoffMs is not None
            else definition.retryBackoffMs,
        )
        step_fields = {"stepId": step_id, "stepKey": step.key}
        attempt = (previous["retry_count"] + 1) if previous else 1
        first_started = previous["started_at"] if previous and previous["started_at"] else None

        condition_error: StepError | None = None
        try:
            should_run = templates.render_condition(step.if_, context)
        except StepError as exc:
            should_run, condition_error = True, exc
        if not should_run:
            stamp = datetime.now(UTC)
            await self._write(
                run,
                step=(
                    where,
                    {
                        "status": StepStatus.SKIPPED.value,
                        "started_at": stamp,
                        "completed_at": stamp,
                        "duration_ms": 0,
                        "output": None,
                    },
                ),
                logs=[("info", f"Step '{name}' skipped: its condition is false", step_fields)],
                events=[
                    (
                        "step_completed",
                        {**step_fields, "status": "skipped", "durationMs": 0, "output": None},
                    )
                ],
            )
            run.outputs[step.key] = None
            return None

        started_at = first_started or datetime.now(UTC)
        run.current = (where, started_at, name)
        while True:
            stored_input: Any = None
            try:
                if condition_error is not None:
                    raise condition_error
                config, stored_input = self._render_config(step, context)
                stored_input = _jsonable(stored_input)
                step_type = self.registry.get(step.type)
                if step_type is None:
                    raise NonRetryableStepError(f"unknown step type {step.type!r}")
                try:
                    parsed = step_type.validate_config(config)
                except ValidationError as exc:
                    raise NonRetryableStepError(_validation_message(step.type, exc)) from exc
                await self._write(
                    run,
                    step=(
                        where,
                        {
                            "status": StepStatus.RUNNING.value,
                            "started_at": started_at,
                            "input": stored_input,
                            "error": None,
                            "retry_count": attempt - 1,
                        },
                    ),
                    logs=[
                        (
                            "info" if attempt == 1 else "debug",
                            f"Step '{name}' started"
                            + (f" (attempt {attempt})" if attempt > 1 else ""),
                            {**step_fields, "attempt": attempt},
                        )
                    ],
                    events=[("step_started", {**step_fields, "attempt": attempt})],
                )
                timeout_ms = step.timeoutMs
                ctx = StepContext(
                    execution_id=run.execution_id,
                    workflow_id=run.workflow_id,
                    step_key=step.key,
                    attempt=attempt,
                    http=self.http,
                    log=lambda level, message, meta: self._write(
                        run, logs=[(level, self.secrets.redact(message), meta)]
                    ),
                )
                output = await self._cancellable(
                    run, self._timed(step_type.run(parsed, ctx), timeout_ms)
                )
            except (ExecutionCancelled, LeaseLost):
                raise
            except Exception as exc:
                error = self.secrets.redact(_error_text(exc))
                retryable = not isinstance(exc, NonRetryableStepError)
                retry_after = exc.retry_after_ms if isinstance(exc, StepError) else None
                decision = decide(policy, attempt, retryable=retryable, retry_after_ms=retry_after)
                fields = {**step_fields, "attempt": attempt, "error": error}
                if decision.retry:
                    await self._write(
                        run,
                        step=(
                            where,
                            {
                                "status": StepStatus.RUNNING.value,
                                "error": error,
                                "retry_count": attempt,
                                "started_at": started_at,
                                "input": stored_input,
                            },
                        ),
                        logs=[
                            (
                                "warn",
                                f"Step '{name}' failed (attempt {attempt}/{policy.max_attempts}): "
                                f"{error}; retrying in {decision.delay_ms} ms",
                                {**fields, "nextDelayMs": decision.delay_ms},
                            )
                        ],
                        events=[("step_retrying", {**fields, "nextDelayMs": decision.delay_ms})],
                    )
                    run.retries += 1
                    await self._cancellable(run, asyncio.sleep(decision.delay_ms / 1000))
                    attempt += 1
                    continue
                await self._write(
                    run,
                    step=(
                        where,
                        {
                            "status": StepStatus.FAILED.value,
                            "error": error,
                            "retry_count": attempt - 1,
                            "started_at": started_at,
                            "input": stored_input,
                            "completed_at": datetime.now(UTC),
                            "duration_ms": _ms_since(started_at),
                        },
                    ),
                    logs=[
                        (
                            "error",
                            f"Step '{name}' failed after {attempt} "
                            f"attempt{'s' if attempt > 1 else ''}: {error}",
                            fields,
                        )
                    ],
                    events=[("step_failed", {**fields, "durationMs": _ms_since(started_at)})],
                )
                run.current = None
                return f"Step '{name}' failed: {error}"

            output = self.secrets.redact(_jsonable(output))
            duration = _ms_since(started_at)
            self._defer(
                run,
                step=(
                    where,
                    {
                        "status": StepStatus.COMPLETED.value,
                        "output": output,
                        "completed_at": datetime.now(UTC),
                        "duration_ms": duration,
                        "retry_count": attempt - 1,
                        "error": None,
                    },
                ),
                logs=[
                    (
                        "info",
                        f"Step '{name}' completed in {duration} ms",
                        {**step_fields, "attempt": attempt, "durationMs": duration},
                    )
                ],
                events=[
                    (
                        "step_completed",
                        {
                            **step_fields,
                            "status": "completed",
                            "attempt": attempt,
                            "durationMs": duration,
                            "output": output,
                        },
                    )
                ],
            )
            run.outputs[step.key] = output
            run.last_output = output
            run.current = None
            return None

    def _render_config(self, step: StepDefinition, context: dict[str, Any]) -> tuple[Any, Any]:
        """The config to run with, and the one to store (secrets masked)."""
        config = templates.render(step.config, context)
        if "secrets" not in repr(step.config):
            return config, config
        return config, templates.render(step.config, {**context, "secrets": self.secrets.masked()})

    def _context(self, run: _Run) -> dict[str, Any]:
        return {
            "input": run.input,
            "steps": {key: {"output": value} for key, value in run.outputs.items()},
            "execution": {
                "id": run.execution_id,
                "workflowId": run.workflow_id,
                "workflowVersionId": run.version.id,
                "version": run.version.number,
                "startedAt": run.started_at.isoformat(),
            },
            "secrets": self.secrets.values(),
        }

    @staticmethod
    async def _timed(awaitable: Awaitable[T], timeout_ms: int | None) -> T:
        if timeout_ms is None:
            return await awaitable
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                return await awaitable
        except TimeoutError:
            raise StepTimeout(f"Step timed out after {timeout_ms} ms") from None

    @staticmethod
    async def _cancellable(run: _Run, awaitable: Awaitable[T]) -> T:
        """Await `awaitable`, stopping it at once if a cancel arrives."""
        work = asyncio.ensure_future(awaitable)
        if run.cancel.is_set():
            work.cancel()
            raise ExecutionCancelled()
        stop = asyncio.ensure_future(run.cancel.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        if work.cancelled():
            raise ExecutionCancelled()
        return work.result()

    # --- writes and events ----------------------------------------------------------------------

    async def _write(
        self,
        run: _Run,
        *,
        step: tuple[dict[str, Any], dict[str, Any]] | None = None,
        logs: Sequence[tuple[str, str, dict[str, Any] | None]] = (),
        events: Sequence[tuple[str, dict[str, Any]]] = (),
        finish: Finish | None = None,
    ) -> None:
        """One fenced write (group-committed): the step row, the log rows and the events (each
        log line is also a `log` event), with whatever `_defer` left; published once committed.

        If it cannot be written, the run is left as it was before the call (the deferred
        completion kept, no step row assumed, no event number used), so nothing is lost.
        """
        seq_before = run.seq
        op, pending = self._op(run, step=step, logs=logs, events=events)
        inserted = [write.step_key for write in op.steps if write.insert]
        op.finish = finish
        deferred, run.deferred = run.deferred, None
        if deferred is not None:
            earlier, earlier_events = deferred
            op.steps[:0] = earlier.steps
            op.logs[:0] = earlier.logs
            op.events[:0] = earlier.events
            pending[:0] = earlier_events
        try:
            cancel_requested = await self._submit(op)
        except BaseException as exc:
            # Cancelled while the write was in flight: it may still be made. Wait to know, so
            # that the run's state matches the database either way.
            if isinstance(exc, asyncio.CancelledError) and await _settled(op):
                await self._publish(pending)
                raise
            run.deferred = deferred
            run.step_rows.difference_update(inserted)
            run.seq = seq_before
            raise
        if cancel_requested is not None:
            run.cancel.set()
        await self._publish(pending)

    async def _submit(self, op: WriteOp) -> datetime | None:
        """Submit, trying again while the database is briefly unreachable (a restart). Gives up
        after half a lease, before another worker could take the execution over. A refused
        duplicate (IntegrityError: a write whose success went unacknowledged is there already)
        is not retried: the delivery ends, and the execution resumes from what is stored."""
        deadline = time.monotonic() + self.config.lease_ms / 2000
        delay = 0.1
        while True:
            try:
                return await self.writer.submit(op)
            except (LeaseLost, IntegrityError):
                raise
            except Exception as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("execution %s: write failed (%s); retrying", op.execution_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _defer(
        self,
        run: _Run,
        *,
        step: tuple[dict[str, Any], dict[str, Any]] | None,
        logs: Sequence[tuple[str, str, dict[str, Any] | None]],
        events: Sequence[tuple[str, dict[str, Any]]],
    ) -> None:
        """Keep a write for the execution's next one (the next step's start, or the end), which
        commits it before anything else happens: one commit instead of two. For a step's
        completion, and for the execution's start (the claim already made it `running`)."""
        assert run.deferred is None
        run.deferred = self._op(run, step=step, logs=logs, events=events)

    def _op(
        self,
        run: _Run,
        *,
        step: tuple[dict[str, Any], dict[str, Any]] | None,
        logs: Sequence[tuple[str, str, dict[str, Any] | None]],
        events: Sequence[tuple[str, dict[str, Any]]],
    ) -> tuple[WriteOp, list[Event]]:
        log_rows = [self._log_row(run, level, message, meta) for level, message, meta in logs]
        pending = self._events(run, log_rows, events)
        op = WriteOp(
            run.execution_id, run.token, logs=log_rows, events=[event.row() for event in pending]
        )
        if step is not None:
            where, values = step
            key = where["step_key"]
            if key in run.step_rows:
                op.steps.append(StepWrite(key, values))
            else:
                row = {
                    "id": new_id(),
                    "step_id": where["step_id"],
                    "position": where["position"],
                    "retry_count": 0,
                    "status": StepStatus.PENDING.value,
                    "input": None,
                    "output": None,
                    "error": None,
                    "started_at": None,
                    "completed_at": None,
                    "duration_ms": None,
                    **values,
                }
                op.steps.append(StepWrite(key, row, insert=True))
                run.step_rows.add(key)
        return op, pending

    def _events(
        self,
        run: _Run,
        log_rows: Sequence[dict[str, Any]],
        events: Sequence[tuple[str, dict[str, Any]]],
    ) -> list[Event]:
        """Number the events of one write: its log lines first, then the state changes."""
        made = []
        for row in log_rows:
            data = {
                "level": row["level"],
                "message": row["message"],
                "metadata": row["metadata"],
                "logId": row["id"],
            }
            made.append(self._event(run, "log", data, row["timestamp"]))
        for event_type, data in events:
            made.append(self._event(run, event_type, data, datetime.now(UTC)))
        return made

    @staticmethod
    def _event(run: _Run, event_type: str, data: dict[str, Any], stamp: datetime) -> Event:
        run.seq += 1
        return Event(
            type=event_type,
            execution_id=run.execution_id,
            workflow_id=run.workflow_id,
            seq=run.seq,
            data=data,
            timestamp=stamp,
        )

    async def _publish(self, events: Sequence[Event]) -> None:
        for event in events:
            await self.bus.publish(event)

    def _log_row(
        self, run: _Run, level: str, message: str, meta: dict[str, Any] | None
    ) -> dict[str, Any]:
        stamp = datetime.now(UTC)
        # Strictly increasing per execution, so ORDER BY timestamp is the order things happened.
        if stamp <= run.last_log_at:
            stamp = run.last_log_at + timedelta(microseconds=1)
        run.last_log_at = stamp
        return {
            "id": new_id(),
            "execution_id": run.execution_id,
            "level": level,
            # What a step logs may hold anything: store what both databases accept.
            "message": _jsonable(message),
            "metadata": _jsonable(meta),
            "timestamp": stamp,
        }

    async def _abort_step(self, run: _Run, error: str) -> None:
        """Mark the step that was running when the execution stopped (cancel, timeout)."""
        if run.current is None:
            return
        where, started_at, name = run.current
        run.current = None
        fields = {"stepId": where["step_id"], "stepKey": where["step_key"], "error": error}
        await self._write(
            run,
            step=(
                where,
                {
                    "status": StepStatus.FAILED.value,
                    "error": error,
                    "completed_at": datetime.now(UTC),
                    "duration_ms": _ms_since(started_at),
                },
            ),
            logs=[("warn", f"Step '{name}' stopped: {error}", fields)],
            events=[("step_failed", {**fields, "durationMs": _ms_since(started_at)})],
        )

    async def _finish(
        self, run: _Run, status: ExecutionStatus, *, output: Any = None, error: str | None = None
    ) -> None:
        level = {ExecutionStatus.COMPLETED: "info", ExecutionStatus.CANCELLED: "warn"}.get(
            status, "error"
        )
        completed_at = datetime.now(UTC)
        duration = int((completed_at - run.started_at).total_seconds() * 1000)
        text = {
            ExecutionStatus.COMPLETED: f"Execution completed in {duration} ms",
            ExecutionStatus.FAILED: f"Execution failed after {duration} ms: {error}",
            ExecutionStatus.CANCELLED: f"Execution cancelled after {duration} ms",
        }[status]
        data: dict[str, Any] = {"durationMs": duration, "status": status.value}
        if status == ExecutionStatus.COMPLETED:
            data["output"] = output
        else:
            data["error"] = error
        finish = Finish(
            status=status,
            output=output,
            error=error,
            completed_at=completed_at,
            duration_ms=duration,
            retries=run.retries,
        )
        await self._write(
            run,
            logs=[(level, text, {"durationMs": duration})],
            events=[(status.value, data)],
            finish=finish,
        )

    async def _release(self, run: _Run) -> None:
        async with self.db.write() as conn:
            await store.release_lease(conn, run.execution_id, run.token)

    async def _heartbeat(self, run: _Run) -> None:
        """Renew the lease while steps run, and pick up cancel requests made in the database."""
        interval = self.config.lease_ms / 3 / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                requested = await self.writer.submit(WriteOp(run.execution_id, run.token))
            except LeaseLost:
                log.warning("execution %s: lease lost during a step", run.execution_id)
                run.cancel.set()
                return
            except Exception:
                log.exception("execution %s: lease renewal failed; will retry", run.execution_id)
                continue
            if requested is not None:
                run.cancel.set()

    @staticmethod
    def _label(run: _Run) -> str:
        definition = run.version.definition
        return f"workflow '{definition.name}' v{run.version.number}"


async def _settled(op: WriteOp, timeout_s: float = 10.0) -> bool:
    """Whether a submitted write was made (waiting for it, bounded)."""
    if op.done is None:
        return False
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.shield(op.done)
    except BaseException:
        return False
    return True


def _ms_since(start: datetime) -> int:
    return int((datetime.now(UTC) - start).total_seconds() * 1000)


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().replace("\x00", "\ufffd")
    if isinstance(exc, StepError):
        return text or type(exc).__doc__ or "Step failed"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _validation_message(step_type: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        parts.append(f"{where}: {err['msg']}")
    return f"invalid config for step type {step_type!r}: " + "; ".join(parts)


def _jsonable(value: Any) -> Any:
    """`value` as JSON both databases can store: PostgreSQL refuses NUL characters and NaN."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, int | float | bool):
        return value
    if isinstance(value, dict):
        return {_jsonable(str(k)): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)
