"""Schedule triggers as BullMQ job schedulers on the dispatch queue: the distributed mode's
`Schedules`.

`sync()` makes Redis match the database: one scheduler `schedule:{triggerId}` per enabled schedule
trigger of a live workflow, none other. It is idempotent; run at worker start, after every
trigger change made through the API, and on the reconciler's passes. BullMQ keeps one job per
slot, so a slot fires once however many workers run; the job reaches the dispatch workers, and
`dispatch_handler` hands it to `EngineService.fire_schedule`, which also starts the slot's
execution once only.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from workflow_engine.engine.schedules import Schedules
from workflow_engine.engine.service import EngineService
from workflow_engine.errors import Conflict, NotFound
from workflow_engine.queue.base import Handler, Job
from workflow_engine.queue.bullmq import BullMQQueue
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.db import Database

log = logging.getLogger(__name__)
SCHEDULER_PREFIX = "schedule:"


def scheduler_id(trigger_id: str) -> str:
    return f"{SCHEDULER_PREFIX}{trigger_id}"


def slot_of(job_id: str) -> int | None:
    """The slot (epoch ms) of a scheduler job, from its id `repeat:{schedulerId}:{millis}`."""
    if not job_id.startswith("repeat:"):
        return None
    tail = job_id.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def is_schedule_job(job: Job) -> bool:
    """A job one of our schedulers fired (its data names the trigger), not a dispatch job."""
    return "triggerId" in job.data


class BullSchedules(Schedules):
    def __init__(self, db: Database, dispatch_queue: BullMQQueue, service: EngineService) -> None:
        self.db = db
        self.queue = dispatch_queue
        self.service = service

    def dispatch_handler(self, dispatch: Handler) -> Handler:
        """The dispatch queue's handler: scheduler jobs start their slot's execution, every
        other job goes to `dispatch`."""

        async def handle(job: Job) -> None:
            if is_schedule_job(job):
                await self.fire(job)
            else:
                await dispatch(job)

        return handle

    async def fire(self, job: Job) -> None:
        """Start the execution of the slot a scheduler job stands for."""
        slot_ms = slot_of(job.id)
        slot = (
            datetime.fromtimestamp(slot_ms / 1000, UTC) if slot_ms is not None else ex_store.now()
        )
        trigger_id = job.data["triggerId"]
        try:
            await self.service.fire_schedule(
                trigger_id, job.data["workflowId"], job.data.get("input") or {}, slot
            )
        except (NotFound, Conflict) as exc:
            log.warning("schedule %s skipped: %s", trigger_id, exc)

    async def run(self) -> None:
        """Nothing to run here: Redis fires the schedulers' jobs."""

    async def sync(self) -> None:
        """Upsert a scheduler per enabled schedule trigger, remove the rest.

        Schedulers already registered with the same cron, timezone and data are left alone, so a
        periodic sync (it also brings schedules back after Redis lost them) costs one read.
        """
        async with self.db.read() as conn:
            rows = await wf_store.enabled_schedules(conn)
        bull = self.queue.bull_queue
        existing = {s["key"]: s for s in await bull.getJobSchedulers() if s}
        wanted = {scheduler_id(row["id"]): row for row in rows}
        for sid, row in wanted.items():
            config = row["config"]
            pattern, tz = config["cron"], config.get("timezone", "UTC")
            data = {
                "triggerId": row["id"],
                "workflowId": row["workflow_id"],
                "input": config.get("input") or {},
            }
            current = existing.get(sid)
            if (
                current
                and current.get("pattern") == pattern
                and current.get("tz") == tz
                and (current.get("template") or {}).get("data") == data
            ):
                continue
            await bull.upsertJobScheduler(
                sid,
                {"pattern": pattern, "tz": tz},
                "schedule",
                data,
                {
                    "removeOnComplete": True,
                    "removeOnFail": True,
                    "attempts": 3,
                    "backoff": {"type": "exponential", "delay": 2000},
                },
            )
        for key in existing:
            if key.startswith(SCHEDULER_PREFIX) and key not in wanted:
                await bull.removeJobScheduler(key)
