from __future__ import annotations

from workflow_engine.domain.retry import MAX_BACKOFF_MS, RetryPolicy, backoff_delay_ms, decide


def test_exponential_backoff_doubles_from_the_base() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_ms=1000)
    assert [backoff_delay_ms(policy, n) for n in (1, 2, 3, 4)] == [1000, 2000, 4000, 8000]


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(max_attempts=50, backoff_ms=1000)
    assert backoff_delay_ms(policy, 40) == MAX_BACKOFF_MS


def test_at_most_max_attempts_tries_in_all() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_ms=10)
    assert decide(policy, 1, retryable=True).retry
    assert decide(policy, 2, retryable=True).retry
    assert not decide(policy, 3, retryable=True).retry


def test_non_retryable_errors_fail_at_once() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_ms=10)
    assert not decide(policy, 1, retryable=False).retry


def test_retry_after_wins_when_longer() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_ms=100)
    assert decide(policy, 1, retryable=True, retry_after_ms=2000).delay_ms == 2000
    assert decide(policy, 1, retryable=True, retry_after_ms=10).delay_ms == 100


def test_jitter_only_adds() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_ms=1000, jitter=0.5)
    delays = {backoff_delay_ms(policy, 1) for _ in range(50)}
    assert all(1000 <= d <= 1500 for d in delays)
