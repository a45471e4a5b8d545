"""Schedule triggers: what turns their cron slots into executions.

Two implementations, chosen in `bootstrap`: the in-process cron (`engine/scheduler.py`, embedded
mode) and BullMQ job schedulers (`redis_support/schedules.py`, distributed mode). Either way a
slot starts its execution through `EngineService.fire_schedule`, which makes it once per slot.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class Schedules(ABC):
    @abstractmethod
    async def sync(self) -> None:
        """Make the registered schedules match the enabled schedule triggers in the database:
        at worker start, after every trigger change made through the engine, and whenever the
        implementation needs it (the reconciler's upkeep)."""

    @abstractmethod
    async def run(self) -> None:
        """Fire the slots that come due, until cancelled (the workers' `scheduler` task).

        Returns at once when something else fires them (BullMQ fires its schedulers' jobs,
        which the dispatch workers hand to the engine)."""
