"""The job queue interface (DESIGN.md section 6), implemented in-process and on BullMQ."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from workflow_engine.domain.priority import DEFAULT_PRIORITY

DISPATCH_QUEUE = "workflow-dispatch"
EXECUTION_QUEUE = "workflow-execution"
VERSION_KEY = "workflowVersionId"
"""Dispatch and execution job data: the execution's (immutable) workflow version. Absent from
the jobs of the reconciler, resumes and debounces: the dispatcher then reads it."""


@dataclass(frozen=True)
class QueueOptions:
    """How a queue retries a job whose handler raised (not counting `Delay`)."""

    attempts: int
    backoff_ms: int = 0
    """Exponential: the wait after failed attempt n is backoff_ms * 2^(n-1)."""


DISPATCH_OPTIONS = QueueOptions(attempts=3, backoff_ms=2000)
EXECUTION_OPTIONS = QueueOptions(attempts=1)


@dataclass(frozen=True)
class Job:
    id: str
    queue: str
    data: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    """1 on the first try; a job re-delayed by `Delay` keeps its attempt number."""
    priority: int = DEFAULT_PRIORITY


Handler = Callable[[Job], Coroutine[Any, Any, None]]


class JobQueue(ABC):
    """One named queue. Job ids are unique among the jobs it holds: adding an id that is waiting,
    delayed or active is a no-op. Finished jobs are removed (trimmed) at once, so the same id can
    be queued again later."""

    def __init__(self, name: str, options: QueueOptions) -> None:
        self.name = name
        self.options = options

    @abstractmethod
    async def add(
        self,
        job_id: str,
        data: dict[str, Any] | None = None,
        *,
        delay_ms: int = 0,
        priority: int = DEFAULT_PRIORITY,
    ) -> None:
        """Queue a job; a no-op when a job with this id is already held (the first one's data
        and priority stay). One round trip on Redis: the caller is not told which of the two
        happened. Of the jobs waiting, those of higher `priority` (1..10) are taken first, in
        the order they were added within one priority; a job put back (`Delay`) keeps its
        priority."""

    @abstractmethod
    async def counts(self) -> dict[str, int]:
        """Job counts by state: waiting, active, delayed, completed, failed."""

    @abstractmethod
    async def start_worker(self, handler: Handler, *, concurrency: int) -> None:
        """Start consuming jobs with up to `concurrency` handlers at once.

        A handler that returns completes the job; one that raises `errors.Delay` puts the job back
        for `delay_ms` without spending an attempt; any other exception spends an attempt and the
        job is retried after the queue's backoff, or dropped as failed after its last attempt.
        """

    @abstractmethod
    async def stop_worker(self, *, grace_s: float) -> None:
        """Take no new jobs; wait up to `grace_s` for running handlers, then cancel the rest
        (their jobs go back to waiting, to be picked up again)."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections. The worker must be stopped first."""


def backoff_ms(options: QueueOptions, failed_attempt: int) -> int:
    return int(options.backoff_ms * 2 ** (failed_attempt - 1))
