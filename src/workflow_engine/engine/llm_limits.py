"""Around each model request of an llm step: the execution's token budget, LLM_LIMITS, and the
usage row (DESIGN.md section 14).

Before a request: over its workflow's `tokenBudget`, the execution fails (not retried); then the
request reserves its estimated tokens (prompt characters / 4 + maxTokens) in its model's window,
waiting, in the worker, for room. After it: the reservation is corrected to the real usage, a
usage row is stored, and a total past the budget fails the step (not retried).

The window is shared by every worker: in Redis in the distributed mode
(redis_support/llm_limits.py), in this process in the embedded mode (`LocalLimiter`).

Waiting for room does not count toward the step's `timeoutMs` (the step's deadline moves by the
time waited); it does count toward the execution's timeout, and the worker slot stays held.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from workflow_engine.domain.llm_limits import LlmLimits, ModelLimit, wait_ms
from workflow_engine.errors import NonRetryableStepError
from workflow_engine.storage import usage as store
from workflow_engine.storage.db import Database

__all__ = ["Limiter", "LlmMetering", "LocalLimiter", "RequestMeter", "estimate_tokens"]

log = logging.getLogger(__name__)

DEFAULT_WINDOW_MS = 60_000


class Limiter(Protocol):
    """A window of requests per model, shared by every worker that uses it."""

    async def take(
        self, model: str, member: str, tokens: int, limit: ModelLimit, window_ms: int
    ) -> int:
        """Reserve `tokens` for request `member` now if they fit (0), else how long to wait."""

    async def settle(self, model: str, member: str, tokens: int, window_ms: int) -> datetime:
        """The request answered: it now counts `tokens`, from now; returns that now."""


class LocalLimiter:
    """The window of this process (the embedded mode, where every worker is in it)."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC).timestamp())
        self._logs: dict[str, dict[str, tuple[int, int]]] = {}

    def _log(self, model: str, now_ms: int, window_ms: int) -> dict[str, tuple[int, int]]:
        entries = self._logs.setdefault(model, {})
        for member, (stamp, _) in list(entries.items()):
            if stamp <= now_ms - window_ms:
                del entries[member]
        return entries

    async def take(
        self, model: str, member: str, tokens: int, limit: ModelLimit, window_ms: int
    ) -> int:
        now_ms = int(self._clock() * 1000)
        entries = self._log(model, now_ms, window_ms)
        wait = wait_ms(sorted(entries.values()), tokens, limit, window_ms, now_ms)
        if wait == 0:
            entries[member] = (now_ms, tokens)
        return wait

    async def settle(self, model: str, member: str, tokens: int, window_ms: int) -> datetime:
        now_ms = int(self._clock() * 1000)
        self._log(model, now_ms, window_ms)[member] = (now_ms, tokens)
        return datetime.fromtimestamp(now_ms / 1000, UTC)


def estimate_tokens(messages: Any, max_tokens: int | None) -> int:
    """What a request may cost before it is sent: its prompt's characters / 4, plus the most
    the answer may take (`maxTokens`; nothing when unset, corrected after the answer)."""
    chars = len(json.dumps(messages, ensure_ascii=False, default=str))
    return chars // 4 + (max_tokens or 0)


@dataclass(frozen=True)
class LlmMetering:
    """The process's metering: built once (bootstrap.py), one `RequestMeter` per step try."""

    db: Database
    limits: LlmLimits = field(default_factory=lambda: LlmLimits({}))
    limiter: Limiter = field(default_factory=LocalLimiter)
    window_ms: int = DEFAULT_WINDOW_MS

    def meter(
        self,
        *,
        execution_id: str,
        workflow_id: str,
        step_key: str,
        attempt: int,
        token_budget: int | None,
        log_line: Callable[[str], Awaitable[None]],
        waited: Callable[[float], None],
    ) -> RequestMeter:
        return RequestMeter(
            self, execution_id, workflow_id, step_key, attempt, token_budget, log_line, waited
        )


@dataclass
class Ticket:
    model: str
    member: str
    estimate: int
    limited: bool


@dataclass
class RequestMeter:
    """The hooks an llm step calls around each model request (`StepContext.llm_meter`)."""

    metering: LlmMetering
    execution_id: str
    workflow_id: str
    step_key: str
    attempt: int
    token_budget: int | None
    log_line: Callable[[str], Awaitable[None]]
    waited: Callable[[float], None]
    """Told of each wait for room (seconds) before it: the step's timeout moves by as much."""

    async def before(self, model: str, messages: Any, max_tokens: int | None) -> Ticket:
        if self.token_budget is not None:
            spent = await self._spent()
            if spent >= self.token_budget:
                raise self._over_budget(spent)
        metering = self.metering
        estimate = estimate_tokens(messages, max_tokens)
        ticket = Ticket(model, uuid.uuid4().hex, estimate, limited=False)
        limit = metering.limits.for_model(model)
        if limit is None:
            return ticket
        told = False
        while True:
            wait = await metering.limiter.take(
                model, ticket.member, estimate, limit, metering.window_ms
            )
            if wait == 0:
                ticket.limited = True
                return ticket
            if not told:
                told = True
                await self.log_line(
                    f"Waiting for room under LLM_LIMITS for model {model!r} "
                    f"(about {estimate} tokens)"
                )
            # A little jitter, so that the requests waiting for one window do not all ask again
            # at the same instant.
            seconds = wait / 1000 + random.uniform(0, 0.05)
            self.waited(seconds)  # before: the step's timeout must not fire during the sleep
            await asyncio.sleep(seconds)

    async def after(self, ticket: Ticket, usage: dict[str, Any] | None) -> None:
        """The request ended: `usage` as the server reported it (None: it failed)."""
        prompt, completion, total = _tokens(usage)
        at = datetime.now(UTC)
        if ticket.limited:
            # Failed (None): the request still counts, its tokens do not. Not reported: the
            # estimate stays.
            spent = 0 if usage is None else (total if _reported(usage) else ticket.estimate)
            at = await self.metering.limiter.settle(
                ticket.model, ticket.member, spent, self.metering.window_ms
            )
        if usage is None:
            return
        async with self.metering.db.write() as conn:
            await store.record(
                conn,
                execution_id=self.execution_id,
                workflow_id=self.workflow_id,
                step_key=self.step_key,
                attempt=self.attempt,
                model=ticket.model,
                prompt_tokens=prompt,
                completion_tokens=completion,
                total_tokens=total,
                at=at,
            )
        if self.token_budget is not None:
            spent = await self._spent()
            if spent > self.token_budget:
                raise self._over_budget(spent)

    async def _spent(self) -> int:
        async with self.metering.db.read() as conn:
            return (await store.for_execution(conn, self.execution_id)).total_tokens

    def _over_budget(self, spent: int) -> NonRetryableStepError:
        return NonRetryableStepError(
            f"Token budget exceeded: the execution has used {spent} tokens, its workflow's "
            f"tokenBudget is {self.token_budget}"
        )


def _reported(usage: dict[str, Any]) -> bool:
    return any(isinstance(usage.get(k), int) for k in ("totalTokens", "promptTokens"))


def _tokens(usage: dict[str, Any] | None) -> tuple[int, int, int]:
    if not usage:
        return 0, 0, 0
    prompt = usage.get("promptTokens") or 0
    completion = usage.get("completionTokens") or 0
    total = usage.get("totalTokens") or prompt + completion
    return int(prompt), int(completion), int(total)
