"""BullMQ scheduler jobs reach `EngineService.fire_schedule` with the slot their id names."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from workflow_engine.errors import NotFound
from workflow_engine.queue.base import Job
from workflow_engine.redis_support.schedules import BullSchedules, slot_of


class FakeService:
    def __init__(self, error: Exception | None = None) -> None:
        self.fired: list[tuple[str, str, Any, datetime]] = []
        self.error = error

    async def fire_schedule(
        self, trigger_id: str, workflow_id: str, input: Any, slot: datetime
    ) -> None:
        self.fired.append((trigger_id, workflow_id, input, slot))
        if self.error is not None:
            raise self.error


def schedules(service: FakeService) -> BullSchedules:
    return BullSchedules(None, None, service)  # type: ignore[arg-type]


def test_slot_of_reads_the_millis_of_a_scheduler_job_id() -> None:
    assert slot_of("repeat:schedule:t1:1700000000000") == 1_700_000_000_000
    assert slot_of("some-execution-id") is None
    assert slot_of("repeat:schedule:t1:soon") is None


async def test_scheduler_jobs_fire_their_slot_and_other_jobs_are_dispatched() -> None:
    service = FakeService()
    dispatched: list[str] = []

    async def dispatch(job: Job) -> None:
        dispatched.append(job.id)

    handle = schedules(service).dispatch_handler(dispatch)
    data = {"triggerId": "t1", "workflowId": "w1", "input": {"a": 1}}
    await handle(Job(id="repeat:schedule:t1:1700000000000", queue="d", data=data))
    await handle(Job(id="execution-1", queue="d"))
    slot = datetime.fromtimestamp(1_700_000_000, UTC)
    assert service.fired == [("t1", "w1", {"a": 1}, slot)]
    assert dispatched == ["execution-1"]


async def test_a_schedule_whose_workflow_is_gone_is_skipped() -> None:
    service = FakeService(NotFound("no workflow"))

    async def dispatch(job: Job) -> None:
        raise AssertionError("not a dispatch job")

    handle = schedules(service).dispatch_handler(dispatch)
    await handle(
        Job(id="repeat:schedule:t1:1", queue="d", data={"triggerId": "t1", "workflowId": "w"})
    )
    assert service.fired[0][2] == {}
