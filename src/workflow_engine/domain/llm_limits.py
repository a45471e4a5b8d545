"""`LLM_LIMITS`: tokens and requests per minute per model, and the sliding window that enforces
them (pure: no I/O, no clock; the in-process limiter uses it, the Redis one runs the same rule in
Lua: redis_support/llm_limits.py).

The window is a log of the requests of the last minute, each with its tokens: the estimate while
the request runs, its real usage once answered (and then stamped with the time of the answer).
A request may start when the log, plus it, stays within both caps; a request alone in the window
always may (one bigger than the cap would otherwise wait forever).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError

__all__ = ["LlmLimits", "ModelLimit", "parse_limits", "wait_ms"]

ANY_MODEL = "*"


class ModelLimit(BaseModel):
    """The caps of one model (or of every model not named: `"*"`), per window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokensPerMinute: int | None = Field(default=None, ge=1)
    requestsPerMinute: int | None = Field(default=None, ge=1)


class LlmLimits(RootModel[dict[str, ModelLimit]]):
    """Caps by model name; `"*"` is the default of models not named (each counted on its own)."""

    def for_model(self, model: str) -> ModelLimit | None:
        limit = self.root.get(model) or self.root.get(ANY_MODEL)
        if limit is None or (limit.tokensPerMinute is None and limit.requestsPerMinute is None):
            return None
        return limit


def parse_limits(value: Any) -> LlmLimits:
    """LLM_LIMITS as given (JSON text or an already decoded dict); ValueError saying what is
    wrong otherwise."""
    if isinstance(value, LlmLimits):
        return value
    if value is None or (isinstance(value, str) and not value.strip()):
        return LlmLimits({})
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"LLM_LIMITS is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(
            'LLM_LIMITS must be a JSON object by model, e.g. {"gpt-4o-mini": '
            '{"tokensPerMinute": 100000, "requestsPerMinute": 500}, "*": {...}}'
        )
    try:
        return LlmLimits.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"LLM_LIMITS is invalid: {problems}") from None


def wait_ms(
    log: Sequence[tuple[int, int]], tokens: int, limit: ModelLimit, window_ms: int, now_ms: int
) -> int:
    """0 if a request of `tokens` may start now, else how long until it may (at the soonest).

    `log`: (stamp in ms, tokens) of the requests still in the window (stamp > now - window),
    oldest first.
    """
    used = sum(t for _, t in log)
    count = len(log)
    if _fits(used, count, tokens, limit):
        return 0
    for stamp, spent in log:  # the oldest leave the window first
        used -= spent
        count -= 1
        if _fits(used, count, tokens, limit):
            return max(stamp + window_ms - now_ms, 1)
    return window_ms


def _fits(used: int, count: int, tokens: int, limit: ModelLimit) -> bool:
    if limit.requestsPerMinute is not None and count + 1 > limit.requestsPerMinute:
        return False
    cap = limit.tokensPerMinute
    return cap is None or count == 0 or used + tokens <= cap
