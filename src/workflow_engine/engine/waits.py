"""Durable waits, the executor's side: a long `delay`, a `wait` and an `approval` step park the
execution.

A parking step writes its start (the row stays `running`) and ends its branch with `Parked`; the
other branches go on, and once nothing else can run the execution parks: one fenced transaction
(storage/waits.py) registers the waits, consumes a stored event that meets one, and releases the
lease; the status becomes `waiting` and the delivery ends (its job completes). A timer (a delayed
job on the dispatch queue, and the reconciler's scan of `wake_at`, whichever comes first) or an
event or a person's decision (storage/approvals.py) flips it back to `pending`; the next delivery
skips the finished steps, as any redelivery does, and the parked step ends from its wait row:
delay -> `{"delayedMs"}`, wait -> the event's `data`, approval -> the decision `{"approved",
"by", "comment", "at"}` (a rejection fails the step, not retried, unless `"onReject":
"continue"`), timeout -> failed (not retried) or, with `"onTimeout": "continue"`, output null.

If a wait is met already when the execution parks (an early event), the execution is not
parked: it keeps its lease and goes on in the same delivery.

Children (`workflow` steps) still wait for their child in-process (engine/children.py); they
could park the same way: a wait row of kind `child`, met when the child finishes.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from workflow_engine.domain.definition import StepDefinition
from workflow_engine.domain.status import EventType, StepStatus
from workflow_engine.engine import checkpoints as cp
from workflow_engine.engine import templates
from workflow_engine.engine.attempts import error_text, validation_message
from workflow_engine.engine.branches import Completed, Failed, Halt, Outcome, Parked, Skipped
from workflow_engine.engine.journal import jsonable
from workflow_engine.errors import StepError
from workflow_engine.queue.base import JobQueue
from workflow_engine.steps.approval import ApprovalConfig
from workflow_engine.steps.delay import DelayConfig
from workflow_engine.steps.wait import WaitConfig
from workflow_engine.storage import waits as store
from workflow_engine.storage.db import Row

if TYPE_CHECKING:
    from workflow_engine.engine.executor import Executor, Run

log = logging.getLogger(__name__)
WAKE_KEY = "wake"
"""Dispatch job data of a timer job: the execution to wake when it is due."""


def timer_job_id(execution_id: str) -> str:
    return f"wake-{execution_id}"


class Wakeups:
    """Queues what a park decided: the timer's delayed job. Best effort: the reconciler's scan
    of `wake_at` wakes the execution anyway (late by at most its interval)."""

    def __init__(self, dispatch_queue: JobQueue) -> None:
        self.dispatch_queue = dispatch_queue

    async def timer(self, execution_id: str, wake_at: datetime) -> None:
        delay_ms = max(0, int((wake_at - cp.now()).total_seconds() * 1000))
        try:
            await self.dispatch_queue.add(
                timer_job_id(execution_id), {WAKE_KEY: execution_id}, delay_ms=delay_ms
            )
        except Exception as exc:
            log.warning(
                "execution %s: timer job not queued (%s); the reconciler wakes it",
                execution_id,
                exc,
            )


def parks(step: StepDefinition) -> bool:
    """Whether the executor runs this step through WaitRunner (it may park)."""
    return step.type in ("delay", "wait", "approval")


class WaitRunner:
    def __init__(self, executor: Executor, *, durable_delay_min_ms: int) -> None:
        self.executor = executor
        self.durable_delay_min_ms = durable_delay_min_ms
        self.wakeups: Wakeups | None = None

    async def run(self, run: Run, step: StepDefinition, state: cp.StepState, halt: Halt) -> Outcome:
        registered = run.waits.get(step.key)
        if state.status == StepStatus.RUNNING and registered is not None:
            return self.resolve(run, state, registered)
        at = self.executor.attempt(run, step, halt)
        try:
            should_run = await templates.render_condition_async(step.if_, at.context)
        except StepError as exc:
            return Failed(error_text(exc))
        if not should_run:
            return Skipped("its condition is false")
        step_type = self.executor.registry.get(step.type)
        assert step_type is not None  # built in
        stored: Any = None
        try:
            config, stored = await self.executor.steps.render_config(
                step.config, at.context, step_type.secret_fields
            )
            stored = jsonable(stored)
            parsed = step_type.validate_config(config)
        except ValidationError as exc:
            return Failed(validation_message(step.type, exc), stored)
        except StepError as exc:
            return Failed(error_text(exc), stored)
        if isinstance(parsed, DelayConfig) and not self._durable(step, parsed):
            return await self.executor.steps.run(step, state, at)
        if state.status != StepStatus.RUNNING:
            state.started_at = cp.now()
            await run.journal.write(cp.step_started(state, stored))
        started = state.started_at or cp.now()
        if isinstance(parsed, DelayConfig):
            ends = started + timedelta(milliseconds=parsed.ms)
            return Parked(store.WaitSpec(step.key, store.DELAY, ends))
        assert isinstance(parsed, WaitConfig | ApprovalConfig)
        timeout = parsed.timeoutMs
        until = started + timedelta(milliseconds=timeout) if timeout else None
        if isinstance(parsed, ApprovalConfig):
            return Parked(
                store.WaitSpec(
                    step.key,
                    store.APPROVAL,
                    until,
                    on_timeout=parsed.onTimeout,
                    message=parsed.message,
                    on_reject=parsed.onReject,
                )
            )
        return Parked(
            store.WaitSpec(
                step.key,
                store.EVENT,
                until,
                event_name=parsed.event,
                event_key=parsed.key,
                on_timeout=parsed.onTimeout,
            )
        )

    def _durable(self, step: StepDefinition, config: DelayConfig) -> bool:
        """Whether a delay parks: long enough, and not cut short by its own `timeoutMs` (then
        it runs, and times out, in the worker as it always did)."""
        if config.ms < self.durable_delay_min_ms:
            return False
        return step.timeoutMs is None or step.timeoutMs > config.ms

    def resolve(self, run: Run, state: cp.StepState, wait: Row) -> Outcome:
        """How a registered wait ends: met, timed out, or still waiting (parked again)."""
        ref, stamp = state.ref, cp.now()
        started = state.started_at or stamp
        if wait["matched_at"] is not None and wait["kind"] == store.APPROVAL:
            return self._decided(run, state, wait)
        if wait["matched_at"] is not None:
            reason, output = "event", wait["data"]
            text = f"Step '{ref.name}' resumed: event {wait['event_name']!r} came"
        elif wait["until"] is not None and wait["until"] <= stamp:
            waited = cp.ms_between(started, wait["until"])
            if wait["kind"] == store.DELAY:
                reason, output = "time", {"delayedMs": waited}
                text = f"Step '{ref.name}' resumed after {waited} ms"
            else:
                error = f"Timed out after {waited} ms waiting for " + (
                    "a decision"
                    if wait["kind"] == store.APPROVAL
                    else f"event {wait['event_name']!r} (key {wait['event_key']!r})"
                )
                reason, output = "timeout", None
                text = f"Step '{ref.name}' resumed: {error}"
                if wait["on_timeout"] != "continue":
                    self._resumed(run, ref, reason, text, "warn")
                    return Failed(error, state.input)
        else:
            return Parked(_spec(wait))
        self._resumed(run, ref, reason, text, "info")
        return Completed(output)

    def _decided(self, run: Run, state: cp.StepState, wait: Row) -> Outcome:
        """An approval a person decided: approved, or rejected (fails unless `onReject` says
        `continue`)."""
        decision: dict[str, Any] = dict(wait["data"] or {})
        approved = bool(decision.get("approved"))
        verb = "approved" if approved else "rejected"
        comment = decision.get("comment")
        said = f": {comment}" if comment else ""
        text = f"Step '{state.ref.name}' {verb} by {decision.get('by')}{said}"
        rejected = not approved and wait["on_reject"] != "continue"
        self._resumed(run, state.ref, verb, text, "warn" if rejected else "info", decision=decision)
        if rejected:
            return Failed(f"Rejected by {decision.get('by')}{said}", state.input)
        return Completed(decision)

    @staticmethod
    def _resumed(
        run: Run,
        ref: cp.StepRef,
        reason: str,
        text: str,
        level: str,
        *,
        decision: dict[str, Any] | None = None,
    ) -> None:
        fields: dict[str, Any] = {**ref.fields(), "reason": reason}
        if decision is not None:
            fields["decision"] = decision
        run.journal.defer(
            cp.Checkpoint(
                logs=(cp.LogLine(level, text, fields),), events=((EventType.RESUMED, fields),)
            )
        )

    async def park(self, run: Run) -> store.Parked:
        """Park the execution on its parked steps (see the module docstring)."""
        specs = list(run.parked.values())
        lines, told = [], []
        for spec in specs:
            ref = run.states[spec.step_key].ref
            data: dict[str, Any] = {**ref.fields()}
            if spec.until is not None:
                data["until"] = spec.until.isoformat()
            if spec.kind == store.EVENT:
                data["event"] = {"name": spec.event_name, "key": spec.event_key}
            if spec.kind == store.APPROVAL:
                data["approval"] = {"message": spec.message}
            told.append((EventType.WAITING, data))
            lines.append(cp.LogLine("info", f"Step '{ref.name}' waits for {_describe(spec)}", data))
        checkpoint = cp.Checkpoint(logs=tuple(lines), events=tuple(told))
        waited_ms = run.waited_ms

        async def write(
            conn: Any, logs: list[dict[str, Any]], events: list[dict[str, Any]]
        ) -> tuple[store.Parked, datetime | None]:
            return await store.park(
                conn,
                run.execution_id,
                run.token,
                specs,
                waited_ms=waited_ms,
                logs=logs,
                events_rows=events,
            )

        parked, wake_at = await run.journal.park(checkpoint, write)
        if parked == store.Parked.WAITING and wake_at is not None and self.wakeups is not None:
            await self.wakeups.timer(run.execution_id, wake_at)
        if parked == store.Parked.RESUME_NOW:
            async with self.executor.db.read() as conn:
                rows = await store.list_waits(conn, run.execution_id)
            run.waits = {row["step_key"]: row for row in rows}
        return parked


def _spec(row: Row) -> store.WaitSpec:
    return store.WaitSpec(
        row["step_key"],
        row["kind"],
        row["until"],
        event_name=row["event_name"],
        event_key=row["event_key"],
        on_timeout=row["on_timeout"],
        message=row["message"],
        on_reject=row["on_reject"],
    )


def _describe(spec: store.WaitSpec) -> str:
    until = f" until {spec.until.isoformat()}" if spec.until is not None else ""
    if spec.kind == store.DELAY:
        return f"time{until}"
    if spec.kind == store.APPROVAL:
        return f"a decision (approve or reject){until}"
    return f"event {spec.event_name!r} (key {spec.event_key!r}){until}"
