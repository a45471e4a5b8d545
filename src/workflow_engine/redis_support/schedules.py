"""Schedule triggers as BullMQ job schedulers on the dispatch queue.

`sync()` makes Redis match the database: one scheduler `schedule:{triggerId}` per enabled schedule
trigger of a live workflow, none other. It is idempotent; run at worker start and after every
trigger change made through the API. BullMQ keeps one job per slot, so a slot fires once however
many workers run; the dispatcher also starts the slot's execution under an idempotency key.
"""

from __future__ import annotations

import logging

from workflow_engine.queue.bullmq import BullMQQueue
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


class BullScheduleSync:
    def __init__(self, db: Database, dispatch_queue: BullMQQueue) -> None:
        self.db = db
        self.queue = dispatch_queue

    async def sync(self) -> int:
        """Upsert a scheduler per enabled schedule trigger, remove the rest; returns how many.

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
        return len(wanted)
