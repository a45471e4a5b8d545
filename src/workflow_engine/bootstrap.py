"""Builds the engine from settings: the ONE place that knows which mode runs.

Embedded (no REDIS_URL): SQLite by default, in-process queues and cancel signals, in-process
cron, workers in `serve`. Distributed (REDIS_URL): BullMQ queues, cancel signals over Redis
pub/sub, schedules as BullMQ job schedulers, a reconciler leader elected in Redis, workers in
`workflow-engine workers` processes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import httpx

from workflow_engine.engine.alerts import FailureAlerts, Failures
from workflow_engine.engine.cancel import CancelSignals, LocalCancelSignals
from workflow_engine.engine.endings import Endings
from workflow_engine.engine.executor import Executor, ExecutorConfig
from workflow_engine.engine.hooks import Hooks
from workflow_engine.engine.keys import FileKeyRevocations, KeyRevocations, KeyRing
from workflow_engine.engine.llm_limits import Limiter, LlmMetering, LocalLimiter
from workflow_engine.engine.reconciler import Reconciler
from workflow_engine.engine.retention import Retention
from workflow_engine.engine.scheduler import Scheduler
from workflow_engine.engine.schedules import Schedules
from workflow_engine.engine.secrets import Secrets
from workflow_engine.engine.service import EngineService
from workflow_engine.engine.waits import Wakeups
from workflow_engine.engine.workers import Dispatcher, ExecutionRunner
from workflow_engine.errors import ConfigurationError
from workflow_engine.events.bus import EventBus, LocalEventBus
from workflow_engine.events.redis_bus import RedisEventBus
from workflow_engine.net.guard import make_http_client
from workflow_engine.private_hooks import check_sqlalchemy_sqlite
from workflow_engine.queue.base import (
    DISPATCH_OPTIONS,
    DISPATCH_QUEUE,
    EXECUTION_OPTIONS,
    EXECUTION_QUEUE,
    Handler,
    JobQueue,
)
from workflow_engine.queue.bullmq import BullMQQueue
from workflow_engine.queue.local import LocalQueue
from workflow_engine.readiness import TIMEOUT_S, Probe, database_probe
from workflow_engine.redis_support.cancel import RedisCancelSignals
from workflow_engine.redis_support.client import check_redis, ping
from workflow_engine.redis_support.key_revocations import RedisKeyRevocations
from workflow_engine.redis_support.leader import RedisLeaderLock
from workflow_engine.redis_support.llm_limits import RedisLimiter
from workflow_engine.redis_support.schedules import BullSchedules
from workflow_engine.settings import Settings
from workflow_engine.steps.llm import LlmServer
from workflow_engine.steps.plugins import load_registry
from workflow_engine.steps.registry import StepRegistry
from workflow_engine.storage import migrate
from workflow_engine.storage.db import Database

log = logging.getLogger(__name__)


@dataclass
class Engine:
    settings: Settings
    db: Database
    registry: StepRegistry
    bus: EventBus
    cancels: CancelSignals
    dispatch_queue: JobQueue
    execution_queue: JobQueue
    executor: Executor
    service: EngineService
    keys: KeyRing
    """Named API keys: managed by the API and the CLI, checked by the API's guard."""
    reconciler: Reconciler
    schedules: Schedules
    hooks: Hooks
    """Signed webhook triggers (`POST /api/hooks/{path}`)."""
    dispatcher: Handler
    """The dispatch queue's handler (with the schedules' jobs, when they come that way)."""
    readiness_probes: dict[str, Probe] = field(default_factory=dict)
    """What `GET /api/ready` checks: the database, and Redis in the distributed mode."""
    retention: Retention | None = None
    """The background removal of old executions (EXECUTION_RETENTION_DAYS set), run with the
    workers, by the reconciler's leader."""
    _background: list[asyncio.Task[None]] = field(default_factory=list)
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def mode(self) -> str:
        return "distributed" if self.settings.redis_url else "embedded"

    @property
    def scheduler(self) -> Scheduler | None:
        """The in-process cron, when it is what fires the schedules (embedded mode)."""
        return self.schedules if isinstance(self.schedules, Scheduler) else None

    async def start_workers(
        self, *, concurrency: int | None = None, say: Callable[[str], None] = print
    ) -> None:
        """Start the dispatch and execution workers, the reconciler and the schedules."""
        concurrency = concurrency or self.settings.execution_concurrency
        say("[Workflow Engine] Starting workers...")
        await self.dispatch_queue.start_worker(self.dispatcher, concurrency=max(2, concurrency))
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
        await self.schedules.sync()
        self._background.append(asyncio.create_task(self.schedules.run(), name="scheduler"))
        # Everything unfinished in the database is queued again before new work arrives.
        if self.reconciler.is_leader is None or await self.reconciler.is_leader():
            await self.reconciler.run_once(pending_grace_ms=0)
        self._background.append(
            asyncio.create_task(self.reconciler.run_forever(), name="reconciler")
        )
        if self.retention is not None:
            self._background.append(
                asyncio.create_task(self.retention.run_forever(say), name="retention")
            )
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
        await self.executor.writer.close()  # what stopped executions submitted is written
        for close in reversed(self._closers):
            try:
                await close()
            except Exception:
                log.exception("error while closing")
        await self.executor.http.aclose()
        if self.executor.steps.llm is not None:
            await self.executor.steps.llm.http.aclose()
        await self.db.dispose()


def key_revocations(settings: Settings) -> KeyRevocations:
    """How a revoked key reaches the other processes: Redis pub/sub, or (the embedded mode,
    where only `workflow-engine keys revoke` can be another process) a stamp file in DATA_DIR."""
    if settings.redis_url:
        return RedisKeyRevocations(settings.redis_url)
    return FileKeyRevocations(settings.data_dir / "keys-revoked")


def key_ring(settings: Settings, db: Database) -> KeyRing:
    """The keys of `db`, for the API and for `workflow-engine keys`."""
    return KeyRing(db, key_revocations(settings), cache_ms=settings.api_key_cache_ms)


def llm_server(settings: Settings) -> LlmServer:
    """The operator's LLM server for llm steps without a `baseUrl`. Trusted: its host is exempt
    from the SSRF guard (a local Ollama or vLLM is the usual case), nothing else is."""
    host = httpx.URL(settings.llm_base_url).host
    return LlmServer(
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key or None,
        http=make_http_client(
            [*settings.http_allowlist, host] if host else settings.http_allowlist,
            allowlist_only=settings.http_allowlist_only,
            timeout_s=settings.llm_timeout_ms / 1000,
        ),
        timeout_s=settings.llm_timeout_ms / 1000,
    )


# bullmq has no job timeout: this caps a handler; the executor enforces execution timeouts.
DISPATCH_JOB_TIMEOUT_MS = 60_000
EXECUTION_JOB_TIMEOUT_MS = 86_400_000 + 60_000


async def build(settings: Settings, *, registry: StepRegistry | None = None) -> Engine:
    """Assemble the engine for `settings`; migrates the database first.

    Without a `registry`: the built-in step types plus the plugins (entry points and
    STEP_MODULES), checked before anything is opened, so a bad plugin leaks no connection.
    """
    if registry is None:
        registry = load_registry(settings.step_modules)
    if not settings.redis_url and settings.resolved_database_url.startswith("sqlite"):
        # The embedded mode's SQLite runs through storage/sqlite_inline.py, which imitates what
        # SQLAlchemy's adapter reaches into: refuse to start on a version where that changed.
        check_sqlalchemy_sqlite()
    db = Database(
        settings.resolved_database_url,
        pool_size=settings.db_pool_size,
        sole_writer=not settings.redis_url,
    )
    await migrate.upgrade(db)
    bus: EventBus = LocalEventBus()
    closers: list[Callable[[], Awaitable[None]]] = []
    is_leader: Callable[[], Awaitable[bool]] | None = None
    cancels: CancelSignals
    probes: dict[str, Probe] = {"database": database_probe(db)}
    limiter: Limiter = LocalLimiter()
    if settings.redis_url:
        url = settings.redis_url
        try:
            await check_redis(url)
        except ConfigurationError:
            await db.dispose()
            raise
        dispatch_queue: JobQueue = BullMQQueue(
            DISPATCH_QUEUE, DISPATCH_OPTIONS, redis_url=url, job_timeout_ms=DISPATCH_JOB_TIMEOUT_MS
        )
        execution_queue: JobQueue = BullMQQueue(
            EXECUTION_QUEUE,
            EXECUTION_OPTIONS,
            redis_url=url,
            job_timeout_ms=EXECUTION_JOB_TIMEOUT_MS,
            lock_ms=settings.lease_ms,
        )
        redis_cancels = RedisCancelSignals(url)
        redis_cancels.start_listening()
        closers.append(redis_cancels.close)
        # Workers publish events on a Redis channel; `serve` listens and feeds Socket.io.
        redis_bus = RedisEventBus(url)
        closers.append(redis_bus.close)
        bus = redis_bus
        cancels = redis_cancels
        leader = RedisLeaderLock(url, ttl_ms=max(3 * settings.reconcile_interval_ms, 5_000))
        closers.append(leader.release)
        is_leader = leader.acquire_or_renew
        redis_limiter = RedisLimiter(url)  # LLM_LIMITS, shared by every worker
        closers.append(redis_limiter.close)
        limiter = redis_limiter
        probes["redis"] = partial(ping, url, timeout_s=TIMEOUT_S)
    else:
        dispatch_queue = LocalQueue(DISPATCH_QUEUE, DISPATCH_OPTIONS)
        execution_queue = LocalQueue(EXECUTION_QUEUE, EXECUTION_OPTIONS)
        cancels = LocalCancelSignals()
    alerts = FailureAlerts(db, enqueue=dispatch_queue.add)
    secrets = Secrets.from_environ(settings.secrets_prefix)
    executor = Executor(
        db=db,
        alerts=alerts,
        registry=registry,
        bus=bus,
        cancels=cancels,
        http=make_http_client(
            settings.http_allowlist,
            allowlist_only=settings.http_allowlist_only,
            timeout_s=settings.http_timeout_ms / 1000,
        ),
        secrets=secrets,
        llm=llm_server(settings),
        metering=LlmMetering(
            db,
            limits=settings.llm_limits,
            limiter=limiter,
            window_ms=settings.llm_limit_window_ms,
        ),
        config=ExecutorConfig(
            lease_ms=settings.lease_ms,
            execution_timeout_ms=settings.execution_timeout_ms,
            retry_jitter=settings.retry_jitter,
            durable_delay_min_ms=settings.durable_delay_min_ms,
        ),
    )
    executor.waits.wakeups = Wakeups(dispatch_queue)
    schedules: Schedules | None = None  # made below: it needs the service, which tells it

    async def triggers_changed() -> None:
        if schedules is not None:
            await schedules.sync()

    service = EngineService(
        db=db,
        registry=registry,
        dispatch_queue=dispatch_queue,
        cancels=cancels,
        on_triggers_changed=triggers_changed,
        bus=bus,
        event_retention_ms=settings.event_retention_ms,
    )
    keys = key_ring(settings, db)
    closers.append(keys.close)
    dispatcher: Handler = Dispatcher(
        db, execution_queue, failures=Failures(db, executor.versions, alerts)
    )
    upkeep: Callable[[], Awaitable[object]] | None = None
    if isinstance(dispatch_queue, BullMQQueue):
        # The schedulers' jobs come through the dispatch queue; Redis may lose the schedulers,
        # so the reconciler's passes register them again.
        bull_schedules = BullSchedules(db, dispatch_queue, service)
        dispatcher = bull_schedules.dispatch_handler(dispatcher)
        upkeep = bull_schedules.sync
        schedules = bull_schedules
    else:
        schedules = Scheduler(service)
    reconciler = Reconciler(
        db,
        dispatch_queue,
        execution_queue,
        interval_ms=settings.reconcile_interval_ms,
        is_leader=is_leader,
        also=upkeep,
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
        keys=keys,
        reconciler=reconciler,
        schedules=schedules,
        hooks=Hooks(db=db, service=service, secrets=secrets, endings=Endings(db, bus)),
        dispatcher=dispatcher,
        readiness_probes=probes,
        retention=Retention(
            db,
            days=settings.execution_retention_days,
            interval_ms=settings.retention_interval_ms,
            batch_size=settings.retention_batch_size,
            is_leader=is_leader,
        )
        if settings.execution_retention_days > 0
        else None,
        _closers=closers,
    )
