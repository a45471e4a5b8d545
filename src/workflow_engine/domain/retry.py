"""Retry policy as a pure function: (attempt, error) -> decision. No I/O."""

from __future__ import annotations

import random

from workflow_engine.records import record

MAX_BACKOFF_MS = 10 * 60 * 1000
MAX_RETRY_AFTER_MS = 60 * 60 * 1000


@record
class RetryPolicy:
    max_attempts: int
    backoff_ms: int
    max_backoff_ms: int = MAX_BACKOFF_MS
    jitter: float = 0.0
    """Fraction of the delay added at random (0.1 = up to +10%); 0 keeps delays exact."""


@record
class RetryDecision:
    retry: bool
    delay_ms: int = 0


def backoff_delay_ms(policy: RetryPolicy, failed_attempt: int) -> int:
    """Delay after failed try n (1-based): backoff * 2^(n-1), capped."""
    delay = int(min(policy.backoff_ms * 2 ** (failed_attempt - 1), policy.max_backoff_ms))
    if policy.jitter:
        delay += int(delay * policy.jitter * random.random())
    return delay


def decide(
    policy: RetryPolicy,
    failed_attempt: int,
    *,
    retryable: bool,
    retry_after_ms: int | None = None,
) -> RetryDecision:
    """Whether to try again after `failed_attempt` failed, and how long to wait first.

    A server's Retry-After wins when it asks for longer than the backoff (bounded to one hour).
    """
    if not retryable or failed_attempt >= policy.max_attempts:
        return RetryDecision(retry=False)
    delay = backoff_delay_ms(policy, failed_attempt)
    if retry_after_ms is not None:
        delay = max(delay, min(retry_after_ms, MAX_RETRY_AFTER_MS))
    return RetryDecision(retry=True, delay_ms=delay)
