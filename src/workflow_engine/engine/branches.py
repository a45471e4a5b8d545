"""Work that runs side by side inside one execution (the steps of a graph, the items of a map):
the outcomes a branch can end with, the `Halt` that stops them, and the tasks running them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from workflow_engine.domain.status import ExecutionStatus
from workflow_engine.storage.waits import WaitSpec

K = TypeVar("K")
T = TypeVar("T")


@dataclass(frozen=True)
class Completed:
    output: Any


@dataclass(frozen=True)
class Skipped:
    reason: str


@dataclass(frozen=True)
class Failed:
    error: str
    stored_input: Any = None


@dataclass(frozen=True)
class Stopped:
    """Stopped from outside (cancel, timeout, a failed sibling) before it ended."""


@dataclass(frozen=True)
class Parked:
    """Waits (a long delay, an event): the step stays `running` and, once nothing else can
    run, the execution parks (engine/waits.py)."""

    wait: WaitSpec


Outcome = Completed | Skipped | Failed | Stopped | Parked


class Halt:
    """Why the running branches must stop; set once, and passed down to nested branches (the
    items of a map stop with the execution, not the other way round)."""

    def __init__(self, parent: Halt | None = None) -> None:
        self.event = asyncio.Event()
        self.reason: str | None = None
        self.status = ExecutionStatus.FAILED
        self.error: str | None = None
        self._children: list[Halt] = []
        if parent is not None:
            parent._children.append(self)
            if parent.reason is not None:
                self.set(parent.reason)

    @property
    def is_set(self) -> bool:
        return self.reason is not None

    def set(
        self,
        reason: str,
        *,
        status: ExecutionStatus = ExecutionStatus.FAILED,
        error: str | None = None,
    ) -> None:
        """Stop: running steps end `failed` with `reason`; the execution ends `status` with
        `error` (default: the reason). The first call wins."""
        if self.reason is not None:
            return
        self.reason, self.status, self.error = reason, status, error or reason
        self.event.set()
        for child in self._children:
            child.set(reason, status=status, error=error)


class StepStopped(Exception):
    """Raised inside a branch when its `Halt` is set."""


async def stoppable(halt: Halt, awaitable: Awaitable[T]) -> T:
    """Await `awaitable`, stopping it at once (StepStopped) if `halt` is set."""
    work = asyncio.ensure_future(awaitable)
    if halt.is_set:
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        raise StepStopped()
    stop = asyncio.ensure_future(halt.event.wait())
    try:
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
    if work.cancelled():
        raise StepStopped()
    return work.result()


class Branches(Generic[K]):
    """The tasks of the branches running now, each keyed by what it runs."""

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[Outcome], K] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, key: K, work: Coroutine[Any, Any, Outcome]) -> None:
        self._tasks[asyncio.create_task(work)] = key

    async def next(self) -> list[tuple[K, Outcome]]:
        """Wait until a branch ends; the branches that ended, in the order they were started.
        A branch that raised (lease lost, a write that failed for good) stops all the others
        and re-raises."""
        try:
            await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            await self.abort()
            raise
        ended = []
        for task, key in list(self._tasks.items()):
            if not task.done():
                continue
            del self._tasks[task]
            if task.exception() is not None:
                await self.abort()
                raise task.exception()  # type: ignore[misc]
            ended.append((key, task.result()))
        return ended

    async def abort(self) -> None:
        """Cancel every branch and wait for them (the delivery is ending)."""
        tasks = list(self._tasks)
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
