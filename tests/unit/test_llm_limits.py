"""LLM_LIMITS: its format, the sliding window's rule (domain/llm_limits.py) and the in-process
limiter on a clock of the test's own."""

from __future__ import annotations

import pytest

from workflow_engine.domain.llm_limits import ModelLimit, parse_limits, wait_ms
from workflow_engine.engine.llm_limits import LocalLimiter, estimate_tokens

TOKENS = ModelLimit(tokensPerMinute=1000)
REQUESTS = ModelLimit(requestsPerMinute=2)


def test_limits_by_model_with_a_default() -> None:
    limits = parse_limits('{"small": {"tokensPerMinute": 10}, "*": {"requestsPerMinute": 3}}')
    assert limits.for_model("small") == ModelLimit(tokensPerMinute=10)
    assert limits.for_model("other") == ModelLimit(requestsPerMinute=3)
    assert parse_limits('{"small": {}}').for_model("small") is None
    assert parse_limits("").for_model("any") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{", "LLM_LIMITS is not valid JSON"),
        ('"x"', "must be a JSON object by model"),
        ('{"m": {"tokensPerMinute": -1}}', "m.tokensPerMinute: Input should be greater"),
        ('{"m": {"tokens": 1}}', "m.tokens: Extra inputs are not permitted"),
    ],
)
def test_bad_limits_say_what_is_wrong(value: str, message: str) -> None:
    with pytest.raises(ValueError, match="LLM_LIMITS") as caught:
        parse_limits(value)
    assert message in str(caught.value)


def test_a_request_waits_until_enough_of_the_window_has_left_it() -> None:
    log = [(0, 400), (100, 400), (200, 100)]
    assert wait_ms(log, 100, TOKENS, 1000, now_ms=500) == 0
    # 200 more do not fit until the first 400 leave (at 0 + 1000).
    assert wait_ms(log, 200, TOKENS, 1000, now_ms=500) == 500
    # 600 need the first two gone (at 100 + 1000).
    assert wait_ms(log, 600, TOKENS, 1000, now_ms=500) == 600
    assert wait_ms(log[:2], 1, REQUESTS, 1000, now_ms=500) == 500
    # Alone in the window, a request bigger than the cap still goes.
    assert wait_ms([], 5000, TOKENS, 1000, now_ms=500) == 0


async def test_the_local_limiter_reserves_then_counts_the_real_usage() -> None:
    now = [100.0]
    limiter = LocalLimiter(clock=lambda: now[0])
    assert await limiter.take("m", "a", 900, TOKENS, 1000) == 0
    assert await limiter.take("m", "b", 200, TOKENS, 1000) == 1000  # a leaves at 100 s + 1 s
    now[0] = 100.5
    await limiter.settle("m", "a", 100, 1000)  # answered: 100 tokens, from 100.5 s
    assert await limiter.take("m", "b", 200, TOKENS, 1000) == 0
    assert await limiter.take("other", "c", 1000, TOKENS, 1000) == 0  # models apart
    now[0] = 101.5  # a's answer has left the window; b has too
    assert await limiter.take("m", "d", 1000, TOKENS, 1000) == 0


def test_the_estimate_is_a_quarter_of_the_prompt_plus_max_tokens() -> None:
    messages = [{"role": "user", "content": "x" * 400}]
    assert estimate_tokens(messages, 50) == 100 + 50 + len('[{"role": "user", "content": ""}]') // 4
