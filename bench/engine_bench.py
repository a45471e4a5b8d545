"""Our engine under load: real `workflow-engine serve` / `workers` processes, driven over HTTP,
measured from the database the engine writes (never from the API, so polling does not perturb it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from harness import (
    ENGINE_BIN,
    BenchError,
    BenchRedis,
    PgDatabase,
    Proc,
    free_port,
    percentile,
    rss_kib,
)
from trigger_client import TriggerClient, TriggerError

TOKEN = "wfbench-token"
FINAL = ("completed", "failed", "cancelled")


def workflow_doc(name: str, steps: int) -> dict[str, Any]:
    """`steps` no-op transform steps (a constant output: no template to render)."""
    return {
        "name": name,
        "steps": [
            {"key": f"s{i}", "type": "transform", "config": {"output": {"ok": True}}}
            for i in range(1, steps + 1)
        ],
    }


def fan_out_doc(name: str, branches: int) -> dict[str, Any]:
    """A first step, `branches` no-op branches that all need it (so they run in parallel, up to
    the workflow's `parallelism`, default 10), and a join that needs them all: `branches + 2`
    steps (DESIGN.md section 14)."""
    noop = {"output": {"ok": True}}
    fan = [
        {"key": f"b{i}", "type": "transform", "needs": ["start"], "config": noop}
        for i in range(1, branches + 1)
    ]
    return {
        "name": name,
        "steps": [
            {"key": "start", "type": "transform", "config": noop},
            *fan,
            {"key": "join", "type": "transform", "needs": [b["key"] for b in fan], "config": noop},
        ],
    }


def map_doc(name: str, parallelism: int) -> dict[str, Any]:
    """One `map` step over `input.items`, a no-op `transform` per item, `parallelism` at a time.
    An execution writes one step row for the map and one per item (`each[3]`)."""
    return {
        "name": name,
        "steps": [
            {
                "key": "each",
                "type": "map",
                "config": {
                    "items": "{{ input.items }}",
                    "parallelism": parallelism,
                    "step": {"type": "transform", "config": {"output": {"ok": True}}},
                },
            }
        ],
    }


def _ts(value: Any) -> datetime:
    """A timestamp from either backend as an aware UTC datetime (SQLite stores naive text)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- reading the engine's database -------------------------------------------------------------


class Probe:
    """Read-only queries on the engine's database (PostgreSQL through asyncpg, SQLite through the
    standard library in a thread)."""

    def __init__(self, pg_url: str | None, sqlite_path: Path | None) -> None:
        self.pg_url = pg_url
        self.sqlite_path = sqlite_path
        self._pg: asyncpg.Connection | None = None
        self._lite: sqlite3.Connection | None = None

    async def open(self) -> Probe:
        if self.pg_url:
            self._pg = await asyncpg.connect(self.pg_url, timeout=10)
        else:
            assert self.sqlite_path is not None
            path = self.sqlite_path
            self._lite = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False
            )
        return self

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close(timeout=10)
        if self._lite is not None:
            self._lite.close()

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """`sql` uses $1, $2... placeholders (rewritten to ? for SQLite)."""
        if self._pg is not None:
            return [tuple(r) for r in await self._pg.fetch(sql, *args, timeout=60)]
        assert self._lite is not None
        lite = self._lite
        for n in range(len(args), 0, -1):
            sql = sql.replace(f"${n}", "?")

        def run() -> list[tuple[Any, ...]]:
            return list(lite.execute(sql, args).fetchall())

        return await asyncio.to_thread(run)

    async def count_final(self, workflow_id: str) -> int:
        rows = await self.fetch(
            "SELECT count(*) FROM executions WHERE workflow_id = $1 "
            "AND status IN ('completed', 'failed', 'cancelled')",
            workflow_id,
        )
        return int(rows[0][0])

    async def count_started(self, workflow_id: str) -> int:
        rows = await self.fetch(
            "SELECT count(*) FROM executions WHERE workflow_id = $1 AND started_at IS NOT NULL",
            workflow_id,
        )
        return int(rows[0][0])

    async def verify(self, workflow_id: str, steps: int) -> tuple[int, int, int]:
        """(executions, completed with `steps` completed step rows, not completed)."""
        total = int(
            (
                await self.fetch(
                    "SELECT count(*) FROM executions WHERE workflow_id = $1", workflow_id
                )
            )[0][0]
        )
        good = int(
            (
                await self.fetch(
                    "SELECT count(*) FROM executions e WHERE e.workflow_id = $1"
                    " AND e.status = 'completed'"
                    " AND (SELECT count(*) FROM execution_steps s WHERE s.execution_id = e.id"
                    "      AND s.status = 'completed') = $2",
                    workflow_id,
                    steps,
                )
            )[0][0]
        )
        not_completed = int(
            (
                await self.fetch(
                    "SELECT count(*) FROM executions WHERE workflow_id = $1"
                    " AND status <> 'completed'",
                    workflow_id,
                )
            )[0][0]
        )
        return total, good, not_completed

    async def times(
        self, workflow_id: str
    ) -> list[tuple[datetime, datetime | None, datetime | None]]:
        """(created_at, started_at, completed_at) of every execution of the workflow."""
        rows = await self.fetch(
            "SELECT created_at, started_at, completed_at FROM executions WHERE workflow_id = $1",
            workflow_id,
        )
        return [
            (_ts(c), _ts(s) if s is not None else None, _ts(d) if d is not None else None)
            for c, s, d in rows
        ]


# --- a running engine --------------------------------------------------------------------------


@dataclass
class Cluster:
    """`serve` (+ `workers` processes in the distributed mode) on a fresh database."""

    label: str
    workers: int  # 0 = embedded (serve runs the workers)
    redis: BenchRedis | None
    concurrency: int
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wfbench-")))
    procs: list[Proc] = field(default_factory=list)
    database: PgDatabase | None = None
    port: int = 0
    probe: Probe | None = None
    http: httpx.AsyncClient | None = None
    triggers: TriggerClient | None = None
    _requests: dict[str, bytes] = field(default_factory=dict)

    @property
    def distributed(self) -> bool:
        return self.redis is not None

    @property
    def worker_procs(self) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith("workers")]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
        env.update(
            API_TOKEN=TOKEN,
            PORT=str(self.port),
            HOST="127.0.0.1",
            DATA_DIR=str(self.workdir / "data"),
            EXECUTION_CONCURRENCY=str(self.concurrency),
            PYTHONUNBUFFERED="1",
        )
        if self.database is not None:
            env["DATABASE_URL"] = self.database.url
        if self.redis is not None:
            env["REDIS_URL"] = self.redis.url
        return env

    async def start(self, *, postgres: bool) -> Cluster:
        try:
            if postgres:
                self.database = await PgDatabase(self.label.replace("-", "_")).create()
            if self.redis is not None:
                await self.redis.clean()
            self.port = free_port()
            env = self._env()
            serve = Proc(
                "serve",
                [str(ENGINE_BIN), "serve"],
                env=env,
                cwd=self.workdir,
                log=self.workdir / "serve.log",
            )
            self.procs.append(serve)
            self.http = httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{self.port}",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=httpx.Timeout(60, connect=10),
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
                trust_env=False,
            )
            self.triggers = TriggerClient("127.0.0.1", self.port, TOKEN)
            await self._wait_health(serve, limit_s=60)
            for n in range(self.workers):
                worker = Proc(
                    f"workers-{n + 1}",
                    [str(ENGINE_BIN), "workers"],
                    env=env,
                    cwd=self.workdir,
                    log=self.workdir / f"workers-{n + 1}.log",
                )
                self.procs.append(worker)
            for worker in self.worker_procs:
                await asyncio.to_thread(
                    worker.wait_for_line, "[Workflow Engine] All systems ready", 60
                )
            sqlite_path = None if postgres else self.workdir / "data" / "workflow-engine.db"
            self.probe = await Probe(
                self.database.url if self.database else None, sqlite_path
            ).open()
            return self
        except BaseException:
            await self.stop()
            raise

    async def _wait_health(self, serve: Proc, limit_s: float) -> None:
        assert self.http is not None
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if not serve.alive():
                raise BenchError(f"serve exited:\n{serve.output()[-3000:]}")
            try:
                if (await self.http.get("/api/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        raise BenchError(f"serve not healthy after {limit_s} s:\n{serve.output()[-3000:]}")

    async def stop(self) -> None:
        if self.probe is not None:
            await self.probe.close()
            self.probe = None
        if self.http is not None:
            await self.http.aclose()
            self.http = None
        if self.triggers is not None:
            await self.triggers.close()
            self.triggers = None
        for proc in reversed(self.procs):
            await asyncio.to_thread(proc.stop, 10.0)
        self.procs.clear()
        if self.database is not None:
            await self.database.drop()
            self.database = None
        if self.redis is not None:
            await self.redis.clean()

    # --- API helpers ---

    async def create_workflow(self, name: str, steps: int) -> str:
        """A workflow of `steps` no-op steps in a line (`workflow_doc`)."""
        return await self.create_document(workflow_doc(name, steps))

    async def create_document(self, document: dict[str, Any]) -> str:
        assert self.http is not None
        response = await self.http.post("/api/workflows", json=document)
        if response.status_code != 201:
            raise BenchError(
                f"create workflow {document.get('name')}: {response.status_code} "
                f"{response.text[:300]}"
            )
        workflow_id: str = response.json()["id"]
        return workflow_id

    async def trigger(self, workflow_id: str) -> str:
        """POST /api/workflows/{id}/execute through the lean client (see trigger_client.py)."""
        assert self.triggers is not None
        request = self._requests.get(workflow_id)
        if request is None:
            request = self._requests[workflow_id] = self.triggers.request(workflow_id)
        try:
            return await self.triggers.send(request)
        except TriggerError as exc:
            raise BenchError(str(exc)) from exc


# --- workloads ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One measured batch of executions."""

    requested: int
    accepted: int
    completed: int  # completed with every step row completed (checked in the database)
    seconds: float
    not_completed: int = 0
    timed_out: bool = False

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0


async def _trigger_many(
    cluster: Cluster, workflow_id: str, n: int, parallel: int, stop_at: float
) -> tuple[int, int]:
    """Trigger `n` executions, `parallel` requests in flight; returns (accepted, errors)."""
    accepted = 0
    errors = 0
    next_index = 0

    async def lane() -> None:
        nonlocal accepted, errors, next_index
        while next_index < n and time.monotonic() < stop_at:
            next_index += 1
            try:
                await cluster.trigger(workflow_id)
                accepted += 1
            except (BenchError, httpx.HTTPError):
                errors += 1

    await asyncio.gather(*(lane() for _ in range(min(parallel, n))))
    return accepted, errors


async def throughput_run(
    cluster: Cluster,
    name: str,
    steps: int,
    n: int,
    *,
    deadline_s: float,
    parallel: int = 32,
    document: dict[str, Any] | None = None,
) -> Run:
    """Trigger `n` executions as fast as the API takes them, wait for all to finish (polling the
    database), then check each in the database. Rate = completed / (last completed_at - start).
    The workflow is `steps` no-op steps in a line, or `document` (whose executions must write
    `steps` step rows each)."""
    assert cluster.probe is not None
    workflow_id = await cluster.create_document(document or workflow_doc(name, steps))
    start_wall = time.time()
    stop_at = time.monotonic() + deadline_s
    trigger_task = asyncio.create_task(_trigger_many(cluster, workflow_id, n, parallel, stop_at))
    timed_out = False
    while True:
        await asyncio.sleep(0.1)
        if trigger_task.done():
            accepted, _errors = trigger_task.result()
            if await cluster.probe.count_final(workflow_id) >= accepted:
                break
        if time.monotonic() > stop_at:
            timed_out = True
            break
    # The trigger lanes stop by themselves at stop_at (each request is bounded by its timeout).
    accepted, _errors = await asyncio.wait_for(trigger_task, timeout=90)
    _total, good, not_completed = await cluster.probe.verify(workflow_id, steps)
    ends = [d for _c, _s, d in await cluster.probe.times(workflow_id) if d is not None]
    end_wall = max(ends).timestamp() if ends and not timed_out else time.time()
    return Run(
        requested=n,
        accepted=accepted,
        completed=good,
        seconds=end_wall - start_wall,
        not_completed=not_completed,
        timed_out=timed_out,
    )


async def sequential_durations(
    cluster: Cluster, name: str, steps: int, n: int, *, deadline_s: float
) -> list[float]:
    """One execution at a time; per execution created_at -> completed_at (ms, engine clock)."""
    assert cluster.probe is not None
    probe = cluster.probe
    workflow_id = await cluster.create_workflow(name, steps)
    stop_at = time.monotonic() + deadline_s
    for done in range(1, n + 1):
        if time.monotonic() > stop_at:
            break
        await cluster.trigger(workflow_id)
        while await probe.count_final(workflow_id) < done:
            if time.monotonic() > stop_at:
                break
            await asyncio.sleep(0.002)
    total, good, _bad = await probe.verify(workflow_id, steps)
    if good != total:
        raise BenchError(f"{name}: {total - good} of {total} executions not completed")
    return [(d - c).total_seconds() * 1000 for c, _s, d in await probe.times(workflow_id) if d]


@dataclass
class MapRun:
    """One execution of `map_doc` over `items` items."""

    items: int
    seconds: float  # created_at -> completed_at, both written by the engine
    completed: bool  # `completed`, with the map's row and every item's row `completed`
    step_rows_completed: int
    status: str
    timed_out: bool = False

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.completed and self.seconds > 0 else 0.0


async def map_run(
    cluster: Cluster, name: str, items: int, *, parallelism: int, deadline_s: float
) -> MapRun:
    """One execution whose map step runs a no-op step over `items` items, nothing else running;
    polled in the database until final or `deadline_s`, then checked there."""
    assert cluster.probe is not None and cluster.http is not None
    probe = cluster.probe
    workflow_id = await cluster.create_document(map_doc(name, parallelism))
    stop_at = time.monotonic() + deadline_s
    response = await cluster.http.post(
        f"/api/workflows/{workflow_id}/execute", json={"input": {"items": list(range(items))}}
    )
    if response.status_code != 202:
        raise BenchError(f"{name}: execute {response.status_code} {response.text[:300]}")
    timed_out = False
    while await probe.count_final(workflow_id) < 1:
        if time.monotonic() > stop_at:
            timed_out = True
            break
        await asyncio.sleep(0.05)
    _total, good, _bad = await probe.verify(workflow_id, items + 1)
    rows = await probe.fetch(
        "SELECT count(*) FROM execution_steps s JOIN executions e ON s.execution_id = e.id"
        " WHERE e.workflow_id = $1 AND s.status = 'completed'",
        workflow_id,
    )
    (status,) = (
        await probe.fetch("SELECT status FROM executions WHERE workflow_id = $1", workflow_id)
    )[0]
    ((created, _started, done),) = await probe.times(workflow_id)
    end = done if done is not None else datetime.now(UTC)
    return MapRun(
        items=items,
        seconds=(end - created).total_seconds(),
        completed=good == 1,
        step_rows_completed=int(rows[0][0]),
        status=str(status),
        timed_out=timed_out,
    )


@dataclass
class LatencyRun:
    offered: int
    offered_rate: float  # requests sent / time spent sending (the schedule kept?)
    accepted_rate: float  # 202 answers / time until the last answer
    started: int
    unstarted: int
    p50_ms: float
    p99_ms: float
    p50_censored: bool
    p99_censored: bool
    max_ms: float


async def dispatch_latency_run(
    cluster: Cluster, name: str, *, rate: float, seconds: float, drain_s: float
) -> LatencyRun:
    """Open loop: request i is sent at start + i/rate whatever the answers. Latency of each
    execution = started_at - created_at (both written by the engine). Executions not started
    `drain_s` after the last request count with their age then (a lower bound, marked >=)."""
    assert cluster.probe is not None
    probe = cluster.probe
    workflow_id = await cluster.create_workflow(name, 1)
    n = int(rate * seconds)
    in_flight = asyncio.Semaphore(512)
    accepted = 0

    async def send() -> None:
        nonlocal accepted
        try:
            await cluster.trigger(workflow_id)
            accepted += 1
        except (BenchError, httpx.HTTPError):
            pass
        finally:
            in_flight.release()

    tasks: list[asyncio.Task[None]] = []
    start = time.monotonic()
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await in_flight.acquire()
        tasks.append(asyncio.create_task(send()))
    sent_s = time.monotonic() - start
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    offered_s = time.monotonic() - start
    drain_until = time.monotonic() + drain_s
    while time.monotonic() < drain_until:
        if await probe.count_started(workflow_id) >= accepted:
            break
        await asyncio.sleep(0.1)
    cut = datetime.now(UTC)
    latencies: list[tuple[float, bool]] = []
    for created, started, _done in await probe.times(workflow_id):
        if started is not None:
            latencies.append(((started - created).total_seconds() * 1000, False))
        else:
            latencies.append(((cut - created).total_seconds() * 1000, True))
    if not latencies:
        raise BenchError("no execution was accepted")
    latencies.sort()

    def pick(q: float) -> tuple[float, bool]:
        value = percentile([v for v, _c in latencies], q)
        censored = any(c for v, c in latencies if v >= value)
        return value, censored

    p50, c50 = pick(50)
    p99, c99 = pick(99)
    unstarted = sum(1 for _v, c in latencies if c)
    return LatencyRun(
        offered=n,
        offered_rate=n / sent_s if sent_s > 0 else 0.0,
        accepted_rate=accepted / offered_s if offered_s > 0 else 0.0,
        started=len(latencies) - unstarted,
        unstarted=unstarted,
        p50_ms=p50,
        p99_ms=p99,
        p50_censored=c50,
        p99_censored=c99,
        max_ms=latencies[-1][0],
    )


@dataclass
class RssRun:
    target: int
    reached: int
    seconds: float
    rss_at_1000_kib: int | None
    rss_end_kib: int
    samples: list[tuple[int, int]]  # (completed, rss KiB)
    verified: int
    not_completed: int


async def worker_rss_run(
    cluster: Cluster, *, target: int, first_mark: int, deadline_s: float, window: int = 400
) -> RssRun:
    """Keep about `window` executions outstanding through ONE `workers` process until `target`
    completed or the deadline; sample its VmRSS at `first_mark` completed and at the end."""
    assert cluster.probe is not None
    probe = cluster.probe
    (worker,) = cluster.worker_procs
    workflow_id = await cluster.create_workflow("rss", 1)
    start = time.monotonic()
    stop_at = start + deadline_s
    triggered = 0
    completed = 0
    rss_first: int | None = None
    samples: list[tuple[int, int]] = []
    next_sample = start
    while time.monotonic() < stop_at:
        completed = await probe.count_final(workflow_id)
        if rss_first is None and completed >= first_mark:
            rss_first = rss_kib(worker.pid)
            samples.append((completed, rss_first))
        if time.monotonic() >= next_sample:
            samples.append((completed, rss_kib(worker.pid)))
            next_sample += 10
        if completed >= target:
            break
        want = min(target, completed + window) - triggered
        if want > 0:
            accepted, _err = await _trigger_many(cluster, workflow_id, min(want, 200), 16, stop_at)
            triggered += accepted
        else:
            await asyncio.sleep(0.05)
    completed = await probe.count_final(workflow_id)
    rss_end = rss_kib(worker.pid)
    samples.append((completed, rss_end))
    if not worker.alive():
        raise BenchError("the worker died during the RSS run")
    _total, good, _bad = await probe.verify(workflow_id, 1)
    # Executions still in flight when the time cap hit are neither counted nor failures.
    finals = await probe.fetch(
        "SELECT count(*) FROM executions WHERE workflow_id = $1 AND status IN ('failed',"
        " 'cancelled')",
        workflow_id,
    )
    return RssRun(
        target=target,
        reached=good,
        seconds=time.monotonic() - start,
        rss_at_1000_kib=rss_first,
        rss_end_kib=rss_end,
        samples=samples,
        verified=good,
        not_completed=int(finals[0][0]),
    )


# --- API at scale ------------------------------------------------------------------------------


def encode_cursor(created_at: datetime, row_id: str) -> str:
    """The engine's cursor format (storage/pagination.py): base64url JSON, no padding."""
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def seed_rows(cluster: Cluster, rows: int) -> dict[str, Any]:
    """`rows` executions of a 1-step workflow (90% completed, 10% failed, 10 ms apart) inserted
    with SQL, plus one execution of a 10-step workflow with its 10 step rows and 100 log lines."""
    assert cluster.database is not None and cluster.http is not None
    wf1 = await cluster.create_workflow("scale-1", 1)
    wf10 = await cluster.create_workflow("scale-10", 10)
    conn = await asyncpg.connect(cluster.database.url, timeout=10)
    try:
        v1 = await conn.fetchval("SELECT active_version_id FROM workflows WHERE id = $1", wf1)
        v10 = await conn.fetchval("SELECT active_version_id FROM workflows WHERE id = $1", wf10)
        started = time.monotonic()
        await conn.execute(
            """
            INSERT INTO executions (id, workflow_id, workflow_version_id, status, input, output,
                error, started_at, completed_at, duration_ms, retry_count, created_at, updated_at,
                fencing_token)
            SELECT md5('wfbench' || g)::uuid::text, $1, $2,
                   CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'completed' END,
                   '{"n": 1}'::jsonb,
                   CASE WHEN g % 10 = 0 THEN NULL ELSE '{"ok": true}'::jsonb END,
                   CASE WHEN g % 10 = 0 THEN 'Step s1 failed: bench' END,
                   ts + interval '1 ms', ts + interval '6 ms', 5, 0, ts, ts + interval '6 ms', 1
            FROM (SELECT g, timestamptz '2024-01-01 00:00:00+00' + g * interval '10 ms' AS ts
                  FROM generate_series(1, $3::int) AS g) AS s
            """,
            wf1,
            v1,
            rows,
            timeout=900,
        )
        insert_s = time.monotonic() - started
        await conn.execute("ANALYZE executions", timeout=300)
        step_ids = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM workflow_steps WHERE workflow_version_id = $1 ORDER BY position",
                v10,
            )
        ]
        detail_id = "wfbench-detail-0000000000000000000001"[:36]
        await conn.execute(
            """
            INSERT INTO executions (id, workflow_id, workflow_version_id, status, input, output,
                started_at, completed_at, duration_ms, retry_count, created_at, updated_at,
                fencing_token)
            VALUES ($1, $2, $3, 'completed', '{"n": 1}'::jsonb, '{"ok": true}'::jsonb,
                    now(), now(), 10, 0, now(), now(), 1)
            """,
            detail_id,
            wf10,
            v10,
        )
        await conn.executemany(
            """
            INSERT INTO execution_steps (id, execution_id, step_id, step_key, position, status,
                input, output, started_at, completed_at, duration_ms, retry_count)
            VALUES ($1, $2, $3, $4, $5, 'completed', '{"ok": true}'::jsonb,
                    '{"ok": true}'::jsonb, now(), now(), 1, 0)
            """,
            [
                (f"wfbench-step-{i:02d}", detail_id, step_id, f"s{i + 1}", i)
                for i, step_id in enumerate(step_ids)
            ],
        )
        await conn.executemany(
            """
            INSERT INTO execution_logs (id, execution_id, level, message, metadata, timestamp)
            VALUES ($1, $2, 'info', $3, '{"step": "s1"}'::jsonb,
                    now() + $4 * interval '1 ms')
            """,
            [
                (f"wfbench-log-{i:03d}", detail_id, f"Step s{i % 10 + 1}: line {i}", i)
                for i in range(100)
            ],
        )
        await conn.execute("ANALYZE", timeout=300)
        count = await conn.fetchval("SELECT count(*) FROM executions")
        deep = await conn.fetchrow(
            "SELECT created_at, id FROM executions ORDER BY created_at DESC, id DESC "
            "OFFSET $1 LIMIT 1",
            int(rows * 0.9),
        )
    finally:
        await conn.close(timeout=10)
    return {
        "rows": int(count),
        "insert_s": insert_s,
        "deep_cursor": encode_cursor(deep["created_at"], deep["id"]),
        "deep_offset": int(rows * 0.9),
        "detail_id": detail_id,
        "step_count": len(step_ids),
    }


async def time_get(
    cluster: Cluster, path: str, n: int, *, check: Any, deadline_s: float
) -> list[float]:
    """`n` sequential GETs (after 5 unmeasured), latency in ms; each answer is checked."""
    assert cluster.http is not None
    samples: list[float] = []
    stop_at = time.monotonic() + deadline_s
    for i in range(n + 5):
        if time.monotonic() > stop_at:
            break
        t0 = time.perf_counter()
        response = await cluster.http.get(path)
        elapsed = (time.perf_counter() - t0) * 1000
        if response.status_code != 200:
            raise BenchError(f"GET {path}: {response.status_code} {response.text[:200]}")
        if i == 0:
            check(response.json())
        if i >= 5:
            samples.append(elapsed)
    return samples
