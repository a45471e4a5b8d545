"""`readiness.check`: every probe bounded by the timeout, failures reported one line each."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy.exc import OperationalError

from workflow_engine.readiness import check


async def _ok() -> None:
    return None


async def _hangs() -> None:
    await asyncio.sleep(60)


async def _refused() -> None:
    raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")


async def _wrapped() -> None:
    raise OperationalError("SELECT 1", {}, OSError("the database system is shutting down"))


async def test_all_probes_answer_ready() -> None:
    result = await check({"database": _ok, "redis": _ok})
    assert result.ready
    assert result.checks == {"database": "ok", "redis": "ok"}
    assert result.reason == ""


async def test_a_probe_that_hangs_fails_after_the_timeout_not_later() -> None:
    started = time.monotonic()
    result = await check({"database": _ok, "redis": _hangs}, timeout_s=0.2)
    assert time.monotonic() - started < 1
    assert not result.ready
    assert result.checks == {"database": "ok", "redis": "no answer within 0.2 s"}
    assert result.reason == "redis: no answer within 0.2 s"


async def test_probes_run_at_once_so_two_hanging_cost_one_timeout() -> None:
    started = time.monotonic()
    result = await check({"database": _hangs, "redis": _hangs}, timeout_s=0.3)
    assert time.monotonic() - started < 0.55
    assert set(result.checks) == {"database", "redis"}


async def test_failures_say_why_in_one_line_with_the_drivers_own_error() -> None:
    result = await check({"database": _wrapped, "redis": _refused})
    assert result.checks["database"] == "OSError: the database system is shutting down"
    assert result.checks["redis"].startswith("ConnectionRefusedError: ")
    assert result.reason.startswith("database: OSError: the database system is shutting down; ")
    assert "\n" not in result.reason
