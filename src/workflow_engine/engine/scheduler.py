"""In-process cron for schedule triggers: the embedded mode's `Schedules`.

Each slot starts at most one execution, even across restarts (`EngineService.fire_schedule`).
Slots missed while the engine was down are not made up.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from workflow_engine.domain.definition import next_fire_time
from workflow_engine.engine.schedules import Schedules
from workflow_engine.engine.service import EngineService
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import workflows as wf_store

log = logging.getLogger(__name__)


class Scheduler(Schedules):
    def __init__(self, service: EngineService, *, tick_s: float = 0.5) -> None:
        self.service = service
        self.tick_s = tick_s
        self._next: dict[str, tuple[datetime, dict[str, Any]]] = {}
        self._reload = asyncio.Event()
        self._reload.set()

    async def sync(self) -> None:
        """Triggers were added, changed or removed: read them again at the next tick."""
        self._reload.set()

    async def _load(self) -> None:
        async with self.service.db.read() as conn:
            rows = await wf_store.enabled_schedules(conn)
        now = ex_store.now()
        fresh: dict[str, tuple[datetime, dict[str, Any]]] = {}
        for row in rows:
            config = row["config"]
            known = self._next.get(row["id"])
            if known and known[1] == {**config, "workflow_id": row["workflow_id"]}:
                fresh[row["id"]] = known
                continue
            slot = next_fire_time(config["cron"], config.get("timezone", "UTC"), now)
            fresh[row["id"]] = (slot, {**config, "workflow_id": row["workflow_id"]})
        self._next = fresh

    async def fire_due(self) -> int:
        """Start an execution for every slot that has come; returns how many."""
        if self._reload.is_set():
            self._reload.clear()
            await self._load()
        now = ex_store.now()
        fired = 0
        for trigger_id, (slot, config) in list(self._next.items()):
            if slot > now:
                continue
            try:
                started = await self.service.fire_schedule(
                    trigger_id, config["workflow_id"], config.get("input") or {}, slot
                )
                # A slot that already has its execution (restart, second scheduler) starts none.
                if started.created:
                    fired += 1
            except Exception:
                log.exception("schedule trigger %s could not start its execution", trigger_id)
            following = next_fire_time(config["cron"], config.get("timezone", "UTC"), now)
            self._next[trigger_id] = (following, config)
        return fired

    async def run(self) -> None:
        while True:
            try:
                await self.fire_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler tick failed")
            await asyncio.sleep(self.tick_s)
