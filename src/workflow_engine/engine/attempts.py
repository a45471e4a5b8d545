"""One step through its tries: condition, rendering, validation, the run with its timeout, and
retries with backoff. Returns how the step ended; writes the checkpoints of its start and of each
retry (its end is the caller's to write, so that it can be committed with the next write)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import ValidationError

from workflow_engine import metrics
from workflow_engine.domain.retry import RetryPolicy, decide
from workflow_engine.engine import checkpoints as cp
from workflow_engine.engine import templates
from workflow_engine.engine.branches import (
    Completed,
    Failed,
    Halt,
    Outcome,
    Skipped,
    StepStopped,
    stoppable,
)
from workflow_engine.engine.deltas import DeltaStream
from workflow_engine.engine.journal import Journal, jsonable
from workflow_engine.engine.llm_limits import LlmMetering
from workflow_engine.engine.secrets import MASK, Secrets
from workflow_engine.errors import LeaseLost, NonRetryableStepError, StepError, StepTimeout
from workflow_engine.records import record
from workflow_engine.steps.base import LlmMeter, RunChild, StepContext, ToolRunner
from workflow_engine.steps.llm import LlmServer
from workflow_engine.steps.registry import StepRegistry
from workflow_engine.telemetry import tracing

T = TypeVar("T")


class StepSpec(Protocol):
    """What runs: a workflow step, or the inner step of a map."""

    @property
    def type(self) -> str: ...
    @property
    def if_(self) -> str | bool | None: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def retryMaxAttempts(self) -> int | None: ...
    @property
    def retryBackoffMs(self) -> int | None: ...
    @property
    def timeoutMs(self) -> int | None: ...


@record
class Attempt:
    """Where one step runs: its execution, and what it may use."""

    execution_id: str
    workflow_id: str
    journal: Journal
    halt: Halt
    policy: RetryPolicy
    context: dict[str, Any]
    count_retry: Callable[[], None]
    run_child: Callable[[cp.StepState], RunChild] | None = None
    token_budget: int | None = None
    """The workflow's `tokenBudget`: llm steps past it fail the execution (engine/llm_limits.py)."""
    tools: Callable[[cp.StepState], ToolRunner] | None = None


class StepRunner:
    def __init__(
        self,
        *,
        registry: StepRegistry,
        secrets: Secrets,
        http: httpx.AsyncClient,
        llm: LlmServer | None = None,
        metering: LlmMetering,
    ) -> None:
        self.registry = registry
        self.secrets = secrets
        self.http = http
        self.llm = llm
        self.metering = metering

    async def run(self, spec: StepSpec, state: cp.StepState, at: Attempt) -> Outcome:
        condition_error: StepError | None = None
        try:
            should_run = await templates.render_condition_async(spec.if_, at.context)
        except StepError as exc:
            should_run, condition_error = True, exc
        if not should_run:
            return Skipped("its condition is false")
        state.started_at = state.started_at or cp.now()
        while True:
            stored_input: Any = None
            deltas = DeltaStream(partial(_write_delta, at.journal, state))
            # Tracing off: the shared no-op span (see telemetry/tracing.py).
            span = tracing.step_attempt(
                at.execution_id, state.ref.key, state.ref.step_id, spec.type, state.attempt
            )
            try:
                if condition_error is not None:
                    raise condition_error
                if at.halt.is_set:
                    raise StepStopped()
                step_type = self.registry.get(spec.type)
                if step_type is None:
                    raise NonRetryableStepError(f"unknown step type {spec.type!r}")
                config, stored_input = await self.render_config(
                    spec.config, at.context, step_type.secret_fields
                )
                stored_input = jsonable(masked(stored_input, step_type.masked_fields))
                try:
                    parsed = step_type.validate_config(config)
                except ValidationError as exc:
                    raise NonRetryableStepError(validation_message(spec.type, exc)) from exc
                await at.journal.start_step(
                    cp.step_started(state, stored_input), pure=step_type.pure
                )
                deadline = _Deadline()
                ctx = StepContext(
                    execution_id=at.execution_id,
                    workflow_id=at.workflow_id,
                    step_key=state.ref.key,
                    attempt=state.attempt,
                    http=self.http,
                    log=lambda level, message, meta: at.journal.write(
                        cp.Checkpoint(logs=(cp.LogLine(level, self.secrets.redact(message), meta),))
                    ),
                    run_child=at.run_child(state) if at.run_child is not None else None,
                    traceparent=span.traceparent,
                    delta=deltas.add,
                    llm=self.llm,
                    llm_meter=self._meter(at, state, deadline),
                    progress=state.progress,
                    save_progress=partial(self._save_progress, at.journal, state),
                    tools=at.tools(state) if at.tools is not None else None,
                )
                attempt = partial(
                    _timed, partial(step_type.run, parsed, ctx), spec.timeoutMs, deadline
                )
                output = await stoppable(at.halt, metrics.timed_step(spec.type, attempt))
                stored_output = self.secrets.redact(jsonable(output))
                await deltas.close()  # the streamed text is stored before the step's end
            except (StepStopped, LeaseLost, asyncio.CancelledError):
                await deltas.discard()
                span.end("stopped")
                raise
            except Exception as exc:
                await deltas.discard()
                error = self.secrets.redact(error_text(exc))
                retry_after = exc.retry_after_ms if isinstance(exc, StepError) else None
                decision = decide(
                    at.policy,
                    state.attempt,
                    retryable=not isinstance(exc, NonRetryableStepError),
                    retry_after_ms=retry_after,
                )
                span.end("failed", error, retrying=decision.retry)
                if not decision.retry:
                    return Failed(error, stored_input)
                await at.journal.write(
                    cp.step_retrying(
                        state, stored_input, error, at.policy.max_attempts, decision.delay_ms
                    )
                )
                at.count_retry()
                await stoppable(at.halt, asyncio.sleep(decision.delay_ms / 1000))
                state.attempt += 1
                continue
            span.end("completed")
            return Completed(stored_output)

    def _meter(self, at: Attempt, state: cp.StepState, deadline: _Deadline) -> LlmMeter:
        async def log_line(message: str) -> None:
            await at.journal.write(cp.Checkpoint(logs=(cp.LogLine("info", message, None),)))

        return self.metering.meter(
            execution_id=at.execution_id,
            workflow_id=at.workflow_id,
            step_key=state.ref.key,
            attempt=state.attempt,
            token_budget=at.token_budget,
            log_line=log_line,
            waited=deadline.extend,
        )

    async def _save_progress(
        self, journal: Journal, state: cp.StepState, progress: Any, message: str | None
    ) -> None:
        """Store what the step did so far on its row (redacted as its output would be)."""
        stored = self.secrets.redact(jsonable(progress))
        await journal.write(cp.step_progress(state, stored, message))
        state.progress = stored

    async def render_config(
        self, config: dict[str, Any], context: dict[str, Any], secret_fields: frozenset[str]
    ) -> tuple[Any, Any]:
        """The config to run with, and the one to store. Secrets render for real only in the
        step type's `secret_fields`; everywhere else, and in what is stored, they are masked."""
        stored = await templates.render_async(config, context)  # its `secrets` are masked
        secret = [field for field in secret_fields if field in config]
        if not secret or "secrets" not in repr([config[field] for field in secret]):
            return stored, stored
        real = {**context, "secrets": self.secrets.values()}
        rendered = dict(stored)
        for field in secret:
            rendered[field] = await templates.render_async(config[field], real)
        return rendered, stored


def masked(stored: Any, fields: frozenset[str]) -> Any:
    """The stored config with the step type's `masked_fields` masked (when they hold a value)."""
    if not fields or not isinstance(stored, dict):
        return stored
    return {k: MASK if k in fields and v is not None else v for k, v in stored.items()}


async def _write_delta(journal: Journal, state: cp.StepState, text: str) -> None:
    await journal.write(cp.step_delta(state, text))


class _Deadline:
    """The step's timeout, which time spent waiting for LLM_LIMITS room does not count in."""

    def __init__(self) -> None:
        self.timeout: asyncio.Timeout | None = None

    def extend(self, seconds: float) -> None:
        when = self.timeout.when() if self.timeout is not None else None
        if self.timeout is not None and when is not None:
            self.timeout.reschedule(when + seconds)


async def _timed(
    start: Callable[[], Awaitable[T]], timeout_ms: int | None, deadline: _Deadline
) -> T:
    """`start()` awaited within the step's timeout. The step's coroutine is made only once this
    one runs, so a step stopped before it began leaves no coroutine behind un-awaited."""
    if timeout_ms is None:
        return await start()
    try:
        async with asyncio.timeout(timeout_ms / 1000) as timeout:
            deadline.timeout = timeout
            return await start()
    except TimeoutError:
        raise StepTimeout(f"Step timed out after {timeout_ms} ms") from None


def error_text(exc: BaseException) -> str:
    text = str(exc).strip().replace("\x00", "\ufffd")
    if isinstance(exc, StepError):
        return text or type(exc).__doc__ or "Step failed"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def validation_message(step_type: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        parts.append(f"{where}: {err['msg']}")
    return f"invalid config for step type {step_type!r}: " + "; ".join(parts)
