"""Builds the engine from settings: the ONE place that knows which mode runs.

Embedded (no REDIS_URL): SQLite by default, in-process queues and events, workers in `serve`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from workflow_engine.engine.cancel import CancelSignals, LocalCancelSignals
from workflow_engine.engine.executor import Executor, ExecutorConfig
from workflow_engine.engine.reconciler import Reconciler
from workflow_engine.engine.scheduler import Scheduler
from workflow_engine.engine.secrets import Secrets
from workflow_engine.engine.service import EngineService
from workflow_engine.engine.workers import Dispatcher, ExecutionRunner
from workflow_engine.errors import ConfigurationError
from workflow_engine.events.bus import LocalEventBus
from workflow_engine.net.guard import make_http_client
from workflow_engine.queue.base import (
    DISPATCH_OPTIONS,
    DISPATCH_QUEUE,
    EXECUTION_OPTIONS,
    EXECUTION_QUEUE,
    JobQueue,
)
from workflow_engine.queue.local import LocalQueue
from workflow_engine.settings import Settings
from workflow_engine.steps.registry import StepRegistry, default_registry
from workflow_engine.storage import migrate
from workflow_engine.storage.db import Database

log = logging.getLogger(__name__)


@dataclass
class Engine:
    settings: Settings
    db: Database
    registry: StepRegistry
    bus: LocalEventBus
    cancels: CancelSignals
    dispatch_queue: JobQueue
    execution_queue: JobQueue
    executor: Executor
    service: EngineService
    reconciler: Reconciler
    scheduler: Scheduler
    _background: list[asyncio.Task[None]] = field(default_factory=list)
    _closers: list[Callable[[], object]] = field(default_factory=list)

    @property
    def mode(self) -> str:
        return "distributed" if self.settings.redis_url else "embedded"

    async def start_workers(
        self, *, concurrency: int | None = None, say: Callable[[str], None] = print
    ) -> None:
        """Start the dispatch and execution workers, the reconciler and the scheduler."""
        concurrency = concurrency or self.settings.execution_concurrency
        say("[Workflow Engine] Starting workers...")
        await self.dispatch_queue.start_worker(
            Dispatcher(self.db, self.execution_queue), concurrency=max(2, concurrency)
        )
        say("[Dispatcher] Worker started")
        runner = ExecutionRunner(
            self.db,
            self.executor,
            lease_ms=self.settings.lease_ms,
            max_deliveries=self.settings.max_deliveries,
        )
        await self.execution_queue.start_worker(runner, concurrency=concurrency)
        say(f"[Executor] Worker started with concurrency {concurrency}")
        say("[Workflow Engine] Registering schedule triggers...")
        # Everything unfinished in the database is queued again before new work arrives.
        await self.reconciler.run_once(pending_grace_ms=0)
        self._background += [
            asyncio.create_task(self.reconciler.run_forever(), name="reconciler"),
            asyncio.create_task(self.scheduler.run_forever(), name="scheduler"),
        ]
        say("[Workflow Engine] All systems ready")

    async def stop(self, *, grace_s: float | None = None) -> None:
        """Stop taking jobs, let running ones finish within the grace period, release resources."""
        grace = self.settings.shutdown_grace_ms / 1000 if grace_s is None else grace_s
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        await self.dispatch_queue.stop_worker(grace_s=0)
        await self.execution_queue.stop_worker(grace_s=grace)
        await self.dispatch_queue.close()
        await self.execution_queue.close()
        await self.executor.http.aclose()
        await self.db.dispose()


async def build(
    settings: Settings,
    *,
    registry: StepRegistry | None = None,
    run_migrations: bool | None = None,
) -> Engine:
    """Assemble the engine for `settings`. Migrates the database first in embedded mode."""
    if settings.redis_url:
        raise ConfigurationError(
            "REDIS_URL is set, but the distributed mode (BullMQ workers) is not available in this "
            "version yet; unset REDIS_URL to run embedded"
        )
    db = Database(settings.resolved_database_url)
    if run_migrations if run_migrations is not None else not settings.redis_url:
        await migrate.upgrade(db)
    registry = registry or default_registry()
    bus = LocalEventBus()
    cancels = LocalCancelSignals()
    dispatch_queue: JobQueue = LocalQueue(DISPATCH_QUEUE, DISPATCH_OPTIONS)
    execution_queue: JobQueue = LocalQueue(EXECUTION_QUEUE, EXECUTION_OPTIONS)
    executor = Executor(
        db=db,
        registry=registry,
        bus=bus,
        cancels=cancels,
        http=make_http_client(settings.http_allowlist, timeout_s=settings.http_timeout_ms / 1000),
        secrets=Secrets.from_environ(settings.secrets_prefix),
        config=ExecutorConfig(
            lease_ms=settings.lease_ms, execution_timeout_ms=settings.execution_timeout_ms
        ),
    )
    scheduler_box: list[Scheduler] = []

    async def triggers_changed() -> None:
        for scheduler in scheduler_box:
            scheduler.changed()

    service = EngineService(
        db=db,
        registry=registry,
        dispatch_queue=dispatch_queue,
        cancels=cancels,
        on_triggers_changed=triggers_changed,
    )
    scheduler = Scheduler(service)
    scheduler_box.append(scheduler)
    reconciler = Reconciler(
        db, dispatch_queue, execution_queue, interval_ms=settings.reconcile_interval_ms
    )
    return Engine(
        settings=settings,
        db=db,
        registry=registry,
        bus=bus,
        cancels=cancels,
        dispatch_queue=dispatch_queue,
        execution_queue=execution_queue,
        executor=executor,
        service=service,
        reconciler=reconciler,
        scheduler=scheduler,
    )
