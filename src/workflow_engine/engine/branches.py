"""Work that runs side by side inside one execution (the steps of a graph, the items of a map):
the outcomes a branch can end with, the `Halt` that stops them, and the tasks running them."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from workflow_engine.domain.status import ExecutionStatus
from workflow_engine.records import record
from workflow_engine.storage.waits import WaitSpec

K = TypeVar("K")
T = TypeVar("T")


@record
class Completed:
    output: Any


@record
class Skipped:
    reason: str


@record
class Failed:
    error: str
    stored_input: Any = None


@dataclass(frozen=True)
class Stopped:
    """Stopped from outside (cancel, timeout, a failed sibling) before it ended."""


@record
class Parked:
    """Waits (a long delay, an event): the step stays `running` and, once nothing else can
    run, the execution parks (engine/waits.py)."""

    wait: WaitSpec


Outcome = Completed | Skipped | Failed | Stopped | Parked


class Halt:
    """Why the running branches must stop; set once, and passed down to nested branches (the
    items of a map stop with the execution, not the other way round)."""

    def __init__(self, parent: Halt | None = None) -> None:
        self.reason: str | None = None
        self.status = ExecutionStatus.FAILED
        self.error: str | None = None
        self._children: list[Halt] = []
        self._watching: dict[asyncio.Task[Any], int] = {}
        """The tasks inside `stoppable` now: how many times each is in there (nested)."""
        self._stopped: dict[asyncio.Task[Any], int] = {}
        """The cancels this halt sent to a task still to be taken back (`stoppable`)."""
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
        for task in self._watching:
            task.cancel()
            self._stopped[task] = self._stopped.get(task, 0) + 1
        for child in self._children:
            child.set(reason, status=status, error=error)


class StepStopped(Exception):
    """Raised inside a branch when its `Halt` is set."""


async def stoppable(halt: Halt, awaitable: Awaitable[T]) -> T:
    """Await `awaitable` in this task, stopping it at once (StepStopped) if `halt` is set.

    The halt cancels the task while it waits here, and the cancel is taken back on the way out
    (`Task.uncancel`), so a cancel from anywhere else still cancels the task. No task of its
    own: a step attempt costs no extra tasks."""
    if halt.is_set:
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        raise StepStopped()
    task = asyncio.current_task()
    assert task is not None
    halt._watching[task] = halt._watching.get(task, 0) + 1
    try:
        return await awaitable
    except asyncio.CancelledError:
        sent = halt._stopped.pop(task, 0)
        if not sent:
            raise
        for _ in range(sent):
            task.uncancel()
        if task.cancelling():
            raise  # cancelled from elsewhere too
        raise StepStopped() from None
    finally:
        left = halt._watching.pop(task) - 1
        if left:
            halt._watching[task] = left
        elif task in halt._stopped:
            # Stopped as it was ending (its result already there): the cancel is still to come
            # at its next await; take it back, the outcome is what it returned or raised.
            for _ in range(halt._stopped.pop(task)):
                task.uncancel()


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
