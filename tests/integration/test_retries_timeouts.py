"""Retries with exponential backoff, Retry-After, non-retryable statuses, and timeouts."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.conftest import StartEngine
from tests.support.flows import parse_time, sql, start
from tests.support.target import Target

pytestmark = pytest.mark.timeout(60)

BACKOFF_MS = 300
SLACK_S = 0.4


def http(key: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "type": "http", "config": {"url": url}, **extra}


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def test_flaky_step_retries_with_doubling_backoff(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    # Without jitter (RETRY_JITTER=0) the delays are exactly backoff * 2^(n-1).
    running = await start(start_engine, db_url, retry_jitter=0)
    await running.create_workflow(
        {
            "name": "flaky",
            "retryMaxAttempts": 3,
            "retryBackoffMs": BACKOFF_MS,
            "steps": [http("call", f"{target.url}/flaky/call?fail=2")],
        }
    )
    execution_id = await running.execute("flaky")
    body = await running.wait(execution_id)

    assert body["status"] == "completed", body
    assert body["output"]["body"] == {"hits": 3}
    assert body["retryCount"] == 2
    [step] = body["steps"]
    assert step["status"] == "completed" and step["retryCount"] == 2 and step["error"] is None

    hits = target.hits("flaky/call")
    assert len(hits) == 3
    # One idempotency key for every try of the step.
    assert {h.idempotency_key for h in hits} == {f"{execution_id}:call"}
    first, second = gaps([h.at for h in hits])
    backoff = BACKOFF_MS / 1000
    assert backoff <= first < backoff + SLACK_S, (first, second)
    assert 2 * backoff <= second < 2 * backoff + SLACK_S, (first, second)

    # The stored log rows tell the same story: the tries start 1x then 2x the backoff apart.
    rows = await sql(
        running,
        "SELECT message, timestamp FROM execution_logs WHERE execution_id = :id ORDER BY timestamp",
        id=execution_id,
    )
    starts = [r["timestamp"] for r in rows if r["message"].startswith("Step 'call' started")]
    retrying = [r["message"] for r in rows if "retrying in" in r["message"]]
    assert len(starts) == 3
    assert retrying == [
        f"Step 'call' failed (attempt 1/3): HTTP 503 from {target.url}/flaky/call: "
        f'{{"error": "flaky failure 1"}}; retrying in {BACKOFF_MS} ms',
        f"Step 'call' failed (attempt 2/3): HTTP 503 from {target.url}/flaky/call: "
        f'{{"error": "flaky failure 2"}}; retrying in {2 * BACKOFF_MS} ms',
    ]
    stamps = [parse_time(str(s).replace(" ", "T")) if isinstance(s, str) else s for s in starts]
    log_first, log_second = ((b - a).total_seconds() for a, b in itertools.pairwise(stamps))
    assert backoff <= log_first < backoff + SLACK_S
    assert 2 * backoff <= log_second < 2 * backoff + SLACK_S


async def test_step_that_always_fails_is_tried_max_attempts_then_stops(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(
        {
            "name": "doomed",
            "retryMaxAttempts": 3,
            "retryBackoffMs": 20,
            "steps": [
                http("first", f"{target.url}/count/first"),
                http("broken", f"{target.url}/status/500"),
                http("later", f"{target.url}/count/later"),
                {"key": "last", "type": "transform", "config": {"output": {"x": 1}}},
            ],
        }
    )
    execution_id = await running.execute("doomed")
    body = await running.wait(execution_id)

    assert body["status"] == "failed", body
    assert body["error"].startswith("Step 'broken' failed: HTTP 500 from")
    assert body["output"] is None
    assert body["retryCount"] == 2
    assert len(target.hits("status/500")) == 3
    assert len(target.hits("count/first")) == 1
    assert target.hits("count/later") == []
    assert [(s["stepKey"], s["status"]) for s in body["steps"]] == [
        ("first", "completed"),
        ("broken", "failed"),
    ]
    broken = body["steps"][1]
    assert broken["retryCount"] == 2
    assert broken["error"].startswith("HTTP 500 from")
    assert broken["completedAt"] is not None and broken["durationMs"] is not None
    assert body["logs"][-1]["message"].startswith("Execution failed after")
    assert any(
        entry["message"].startswith("Step 'broken' failed after 3 attempts")
        for entry in body["logs"]
    )


async def test_http_404_fails_at_once(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(
        {
            "name": "missing",
            "retryMaxAttempts": 5,
            "retryBackoffMs": 10,
            "steps": [http("get", f"{target.url}/status/404")],
        }
    )
    body = await running.wait(await running.execute("missing"))
    assert body["status"] == "failed"
    assert "HTTP 404" in body["error"]
    assert len(target.hits("status/404")) == 1
    assert body["steps"][0]["retryCount"] == 0 and body["retryCount"] == 0


async def test_429_retry_after_is_honoured(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(
        {
            "name": "limited",
            "retryBackoffMs": 10,
            "steps": [http("get", f"{target.url}/retry-after/get?seconds=2")],
        }
    )
    body = await running.wait(await running.execute("limited"))
    assert body["status"] == "completed", body
    assert body["steps"][0]["retryCount"] == 1
    hits = target.hits("retry-after/get")
    assert len(hits) == 2
    [gap] = gaps([h.at for h in hits])
    assert 2.0 <= gap < 2.0 + SLACK_S + 0.4, gap
    assert any("retrying in 2000 ms" in entry["message"] for entry in body["logs"])


async def test_delay_step_over_its_timeout_fails(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(
        {
            "name": "slow-delay",
            "retryMaxAttempts": 1,
            "steps": [
                {"key": "wait", "type": "delay", "timeoutMs": 200, "config": {"ms": 10_000}},
                http("after", f"{target.url}/count/after"),
            ],
        }
    )
    body = await running.wait(await running.execute("slow-delay"), timeout=5)
    assert body["status"] == "failed"
    assert body["error"] == "Step 'wait' failed: Step timed out after 200 ms"
    [step] = body["steps"]
    assert step["status"] == "failed" and step["error"] == "Step timed out after 200 ms"
    assert body["durationMs"] < 3000
    assert target.hits("count/after") == []


async def test_slow_http_step_over_its_timeout_is_retried_then_fails(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(
        {
            "name": "slow-http",
            "retryMaxAttempts": 2,
            "retryBackoffMs": 10,
            "steps": [http("call", f"{target.url}/slow?ms=3000", timeoutMs=200)],
        }
    )
    body = await running.wait(await running.execute("slow-http"), timeout=10)
    assert body["status"] == "failed"
    assert body["error"] == "Step 'call' failed: Step timed out after 200 ms"
    assert body["steps"][0]["retryCount"] == 1
    assert len(target.hits("slow")) == 2
    assert body["durationMs"] < 2500


async def test_workflow_timeout_fails_the_execution(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(
        {
            "name": "too-long",
            "timeoutMs": 1500,  # time for `quick` even on a loaded machine
            "steps": [
                {"key": "quick", "type": "transform", "config": {"output": {"ok": True}}},
                # Shorter than DURABLE_DELAY_MIN_MS: it sleeps in the worker, and the timeout
                # cuts it (a durable wait's time does not count toward the timeout).
                {"key": "wait", "type": "delay", "config": {"ms": 4_000}},
                http("after", f"{target.url}/count/after"),
            ],
        }
    )
    body = await running.wait(await running.execute("too-long"), timeout=10)
    assert body["status"] == "failed"
    assert "timed out" in body["error"]
    assert body["error"] == "Execution timed out after 1500 ms"
    assert [(s["stepKey"], s["status"]) for s in body["steps"]] == [
        ("quick", "completed"),
        ("wait", "failed"),
    ]
    assert "timed out" in body["steps"][1]["error"]
    assert 1500 <= body["durationMs"] < 4000
    assert target.hits("count/after") == []


async def test_executions_failing_together_do_not_retry_in_lockstep(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url, execution_concurrency=10)
    await running.create_workflow(
        {
            "name": "herd",
            "retryMaxAttempts": 2,
            "retryBackoffMs": 1000,
            "steps": [
                {
                    "key": "call",
                    "type": "http",
                    "config": {"url": target.url + "/flaky/{{ input.n }}?fail=1"},
                }
            ],
        }
    )
    ids = [await running.execute("herd", {"n": n}) for n in range(10)]
    delays = []
    for execution_id in ids:
        body = await running.wait(execution_id, timeout=30)
        assert body["status"] == "completed"
        [retrying] = [e for e in body["logs"] if "retrying in" in e["message"]]
        delays.append(retrying["metadata"]["nextDelayMs"])
    # Each waits the backoff plus up to 10% (RETRY_JITTER), not all the same time.
    assert all(1000 <= delay <= 1100 for delay in delays), delays
    assert len(set(delays)) > 1, delays
