"""Helpers of the graph tests run as processes (e2e, distributed): a fan-out document whose
branches call the test target, and a bounded wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from tests.support.target import Target

T = TypeVar("T")


def fan_out(target: Target, name: str, *, fast: int, slow: int, slow_ms: int) -> dict[str, Any]:
    """`fast` quick branches (`fast{i}` -> count/{name}-f{i}) and `slow` ones (`slow{i}` ->
    slowcount/{name}-s{i}, `slow_ms` each), all starting at once, then a `join` (count/{name}-join)
    that needs them all."""
    quick = [
        {
            "key": f"fast{i}",
            "type": "http",
            "needs": [],
            "config": {"url": f"{target.url}/count/{name}-f{i}"},
        }
        for i in range(fast)
    ]
    long = [
        {
            "key": f"slow{i}",
            "type": "http",
            "needs": [],
            "config": {"url": f"{target.url}/slowcount/{name}-s{i}?ms={slow_ms}"},
        }
        for i in range(slow)
    ]
    join = {
        "key": "join",
        "type": "http",
        "needs": [step["key"] for step in quick + long],
        "config": {"url": f"{target.url}/count/{name}-join"},
    }
    return {"name": name, "retryBackoffMs": 100, "steps": [*quick, *long, join]}


def wait_for(check: Callable[[], T], what: str, timeout: float = 30) -> T:
    """`check()` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
