"""The metrics hooks the engine calls, on the registry itself (no engine needed)."""

from __future__ import annotations

import asyncio

import pytest

from workflow_engine import metrics
from workflow_engine.errors import StepTimeout
from workflow_engine.queue.base import DISPATCH_OPTIONS
from workflow_engine.queue.local import LocalQueue


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_reconciler_requeues_count_by_reason_and_leases_lost_count() -> None:
    requeued = "workflow_engine_reconciler_requeued_total"
    pending, expired = sample(requeued, reason="pending"), sample(requeued, reason="expired")
    lost = sample("workflow_engine_leases_lost_total")
    metrics.requeued(pending=2, expired=0)
    metrics.requeued(pending=0, expired=3)
    metrics.lease_lost()
    assert sample(requeued, reason="pending") == pending + 2
    assert sample(requeued, reason="expired") == expired + 3
    assert sample("workflow_engine_leases_lost_total") == lost + 1


def test_status_classes() -> None:
    assert [metrics.status_class(s) for s in (101, 204, 302, 404, 503, 99, 600)] == [
        "1xx",
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "error",
        "error",
    ]


async def test_a_step_attempt_is_observed_with_its_outcome() -> None:
    name = "workflow_engine_step_attempt_duration_seconds_count"

    async def ok() -> int:
        return 1

    async def times_out() -> int:
        raise StepTimeout("Step timed out after 1 ms")

    async def hangs() -> int:
        await asyncio.sleep(10)
        return 1

    before = {
        o: sample(name, step_type="t", outcome=o) for o in ("completed", "timeout", "stopped")
    }
    assert await metrics.timed_step("t", ok) == 1
    with pytest.raises(StepTimeout):
        await metrics.timed_step("t", times_out)
    task = asyncio.ensure_future(metrics.timed_step("t", hangs))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for outcome in ("completed", "timeout", "stopped"):
        assert sample(name, step_type="t", outcome=outcome) == before[outcome] + 1


class _SlowQueue(LocalQueue):
    async def counts(self) -> dict[str, int]:
        await asyncio.sleep(5)
        return {}


async def test_a_queue_that_does_not_answer_in_time_has_no_samples() -> None:
    quick = LocalQueue("quick", DISPATCH_OPTIONS)
    await quick.add("a")
    await metrics.refresh_queue_jobs([quick, _SlowQueue("slow", DISPATCH_OPTIONS)], timeout_s=0.1)
    assert sample("workflow_engine_queue_jobs", queue="quick", state="waiting") == 1
    assert (
        metrics.REGISTRY.get_sample_value(
            "workflow_engine_queue_jobs", {"queue": "slow", "state": "waiting"}
        )
        is None
    )


async def test_the_workers_endpoint_serves_the_registry() -> None:
    server = await metrics.start_server("127.0.0.1", 0, [])
    assert server is None  # 0: disabled
    server = metrics.MetricsServer([])
    await server.start("127.0.0.1", 0)
    assert server.server is not None
    port = server.server.sockets[0].getsockname()[1]
    try:
        for path, status in (("/metrics", b"200"), ("/nope", b"404")):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            reply = await reader.read()
            writer.close()
            assert reply.split(b" ")[1] == status
            if status == b"200":
                assert b"workflow_engine_leases_lost_total" in reply
        # Taken port: a warning and no server, not a crash.
        assert await metrics.start_server("127.0.0.1", port, []) is None
    finally:
        await server.close()
