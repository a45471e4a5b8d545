"""What one execution costs each component of the distributed engine, and what that allows past
one machine. About 3.5 minutes here (a soft budget of 5.5, a hard cap of 6):

    .venv/bin/python bench/scaling.py [--repeats 3] [--no-write] [--json PATH]
                                      [--report-from PATH] [--shared-redis] [--redis-db 13]

It starts the engine as a user runs it in the distributed mode (`serve` + 1 `workers`, then
`serve` + 2 `workers`, EXECUTION_CONCURRENCY 50, a fresh PostgreSQL database, and a
redis-server of its own started with the shared server's persistence settings, so that Redis's
CPU time and commandstats are the engine's alone) and, for measured batches of 1-step and of
10-step no-op `transform` executions (`engine_bench.throughput_run`: triggered over HTTP, every
execution checked in the database), records per completed execution:

- CPU ms of each component: `serve`, each `workers` process (its process group), the PostgreSQL
  backends of the bench's database, PostgreSQL's background processes (server-wide),
  redis-server, and this script (load generator and its probe queries, with their backends):
  utime+stime from /proc/<pid>/stat before and after each batch, sampled every 0.5 s so that a
  process that comes or goes during the batch counts too;
- WAL bytes: the server's WAL between the flush positions before and after the batch, times
  the bench database's share of the record bytes (pg_waldump over the WAL files; without it,
  the server-wide figure), and Redis commands by command (INFO commandstats) and bytes;
- PostgreSQL commits and rows inserted/updated/deleted (pg_stat_database, and per table from
  pg_stat_user_tables). These counters reach the statistics up to 10 s late (a backend flushes
  them when idle, at most every 1 s, else after 10 s), so they are read only once the engine
  has been idle 11 s, over all the batches of a workload together; what the idle engine does
  in 11 s (measured beforehand) and this script's own queries are subtracted. Statements come
  from pg_stat_statements only if the server already loads it (most of the engine's statements
  run without BEGIN/COMMIT, so commits are close to them);
- the achieved rate, and the machine's busy cores (/proc/stat), to see how much of the 2 cores
  other work took meanwhile.

Then a short commit-rate probe (one and 16 connections inserting one row per transaction), and
the report: a table of medians (of `--repeats` batches) and bench/SCALING.md, which models the
rate each component allows with more machines (the assumptions are constants below and are
stated in SCALING.md). Every batch, wait and process is time-limited; everything it started is
stopped at the end, also on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import engine_bench
from engine_bench import Cluster, Run, throughput_run
from harness import (
    MARKER_KEY,
    PG_ADMIN_DB,
    PG_HOST,
    REDIS_PORT,
    ROOT,
    BenchError,
    BenchRedis,
    PgDatabase,
    Proc,
    free_port,
    pg_url,
)

BENCH = Path(__file__).resolve().parent
SECTION = BENCH / "SCALING.md"
CLK = os.sysconf("SC_CLK_TCK")

CONCURRENCY = 50
CLUSTERS = (("1w", 1), ("2w", 2))  # label, `workers` processes
WORKLOADS = (1, 10)  # steps per execution
SETTLE_S = 11.0  # PostgreSQL statistics are flushed by an idle backend within 10 s
SAMPLE_S = 0.5
TARGET_S = 3.5  # length of one measured batch, from the warm-up's rate
MIN_N, MAX_N = 60, 4000
BATCH_DEADLINE_S = 45.0
BUDGET_S = 330.0  # soft: a cluster that would start past it is skipped; hard cap 6 min

# The model's assumptions (stated in SCALING.md).
WORKER_CORES = (8, 32, 128)
PG_CORES = 16
COMMIT_CEILING = 20_000  # commits/s of one primary: assumed, see SCALING.md
WAL_CEILING = 200e6  # WAL bytes/s one primary (and its standby) sustain: assumed
MODEL_FROM = "2w"  # the per-execution costs the model uses (several `workers` processes)

COMPONENTS = ("serve", "workers", "postgres", "pg-bg", "redis", "bench")
LABELS = {
    "serve": "`serve` (HTTP API)",
    "workers": "`workers` processes (all)",
    "postgres": "PostgreSQL backends (bench DB)",
    "pg-bg": "PostgreSQL background (server-wide)",
    "redis": "redis-server",
    "bench": "bench process + its PG queries",
}


class ScalingDatabase(PgDatabase):
    """A scratch database named wfscale_*, not wfbench_*: bench/run.py drops every wfbench_*
    database when it starts (its clean-up after killed runs), which would drop this run's
    database under it when both run at once on this shared machine."""

    PREFIX = "wfscale_"

    def __init__(self, purpose: str) -> None:
        super().__init__(purpose)
        self.name = self.PREFIX + self.name.removeprefix("wfbench_")
        self.url = pg_url(self.name)


# Cluster.start makes its database through engine_bench's name for PgDatabase.
engine_bench.PgDatabase = ScalingDatabase  # type: ignore[attr-defined]


def say(line: str) -> None:
    print(f"[scaling {time.monotonic() - STARTED:6.1f}s] {line}", flush=True)


STARTED = time.monotonic()


# --- CPU time from /proc ------------------------------------------------------------------------


def machine_busy_s() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK


class Meter:
    """CPU seconds per component, from /proc/<pid>/stat of every process that belongs to one.

    Processes are told apart by (pid, start time). A process that appears during a window counts
    from zero; one that exits during it counts with its last sample (every SAMPLE_S)."""

    def __init__(
        self, dbname: str, groups: dict[int, str], bench_pids: set[int], redis_port: int
    ) -> None:
        self.dbname = dbname
        self.redis_port = redis_port
        self.groups = groups  # process group id -> component (each engine process's group)
        self.bench_pids = bench_pids  # PostgreSQL backends of this script's own connections
        self.own_pid = os.getpid()
        self._kind: dict[tuple[int, int], str | None] = {}
        self.last: dict[tuple[int, int], tuple[str, float]] = {}
        self.base: dict[tuple[int, int], float] = {}
        self.t0 = 0.0
        self.busy0 = 0.0

    def _classify(self, pid: int, comm: str, pgrp: int) -> str | None:
        if pid == self.own_pid or pid in self.bench_pids:
            return "bench"
        if pgrp in self.groups:
            return self.groups[pgrp]
        if comm not in ("postgres", "redis-server"):
            return None
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            return None
        if comm == "redis-server":
            return "redis" if f":{self.redis_port}" in cmdline else None
        if self.dbname in cmdline.split():
            return "postgres"
        if re.search(r"\(\d+\)|\[local\]", cmdline):
            return "pg-other"  # a backend of another database: someone else's load
        return "pg-bg"

    def scan(self) -> dict[tuple[int, int], tuple[str, float]]:
        found: dict[tuple[int, int], tuple[str, float]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            rpar = raw.rindex(b")")
            comm = raw[raw.index(b"(") + 1 : rpar].decode(errors="replace")
            fields = raw[rpar + 2 :].split()
            key = (pid, int(fields[19]))
            if key not in self._kind:
                self._kind[key] = self._classify(pid, comm, int(fields[2]))
            kind = self._kind[key]
            if kind is not None:
                found[key] = (kind, (int(fields[11]) + int(fields[12])) / CLK)
        return found

    def sample(self) -> None:
        self.last.update(self.scan())

    def begin(self) -> None:
        self.last = self.scan()
        self.base = {key: cpu for key, (_kind, cpu) in self.last.items()}
        self.t0 = time.monotonic()
        self.busy0 = machine_busy_s()

    def end(self) -> tuple[dict[str, float], float, float]:
        """(CPU seconds per component, wall seconds, machine busy core-seconds) since begin()."""
        self.sample()
        cpu: dict[str, float] = defaultdict(float)
        for key, (kind, seconds) in self.last.items():
            cpu[kind] += seconds - self.base.get(key, 0.0)
        return dict(cpu), time.monotonic() - self.t0, machine_busy_s() - self.busy0

    async def run_sampler(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_S)
            self.sample()


# --- a Redis of the bench's own ---------------------------------------------------------------


class PrivateRedis(BenchRedis):
    """A redis-server this script starts on a free port, with the shared server's persistence
    and I/O-thread settings: its CPU time and INFO commandstats are then the engine's alone (the
    shared server's are server-wide, and other benchmarks use it at the same time)."""

    def __init__(self, port: int, db: int) -> None:
        super().__init__(db)
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/{db}"


async def start_private_redis(db: int, workdir: Path) -> tuple[Proc, PrivateRedis, str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    shared = BenchRedis(db).client()
    try:
        config: dict[str, str] = {}
        for name in ("save", "appendonly", "appendfsync", "io-threads"):
            config.update(await shared.config_get(name))
    finally:
        await shared.aclose()
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no"]
    argv += ["--dir", str(workdir), "--logfile", ""]
    for name, value in config.items():
        argv += [f"--{name}", value]
    proc = Proc("redis", argv, env=dict(os.environ), cwd=workdir, log=workdir / "redis.log")
    try:
        await asyncio.to_thread(proc.wait_for_line, "Ready to accept connections", 20)
    except BaseException:
        proc.stop(5)
        raise
    described = ", ".join(f"{k} {v!r}" for k, v in config.items())
    return proc, PrivateRedis(port, db), described


# --- WAL of one database ------------------------------------------------------------------------

WAL_LINE = re.compile(rb"len \(rec/tot\):\s*\d+/\s*(\d+), tx:\s*(\d+),")
WAL_REL = re.compile(rb" rel \d+/(\d+)/")


class WalReader:
    """The share of WAL between two flush positions that belongs to one database: pg_waldump
    over the server's WAL files; a record is the database's if a block it touches is in the
    database, or if it belongs to a transaction that wrote such a record (its commit)."""

    def __init__(self, waldump: str, wal_dir: str, dboid: int) -> None:
        self.waldump = waldump
        self.wal_dir = wal_dir
        self.dboid = dboid

    @staticmethod
    async def find(admin: asyncpg.Connection, dboid: int) -> WalReader | None:
        if PG_HOST not in ("127.0.0.1", "localhost", "::1"):
            return None  # the WAL files are on another machine
        try:
            major = int(await admin.fetchval("SHOW server_version_num")) // 10000
            data_dir = str(await admin.fetchval("SHOW data_directory"))
        except asyncpg.PostgresError:
            return None
        candidates = [f"/usr/lib/postgresql/{major}/bin/pg_waldump", shutil.which("pg_waldump")]
        waldump = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
        wal_dir = os.path.join(data_dir, "pg_wal")
        if waldump is None or not os.access(wal_dir, os.R_OK | os.X_OK):
            return None
        return WalReader(waldump, wal_dir, dboid)

    def share(self, start: str, end: str) -> tuple[float, float] | None:
        """(the database's share of the record bytes, the share of those in full-page images)."""
        try:
            out = subprocess.run(
                [self.waldump, "-p", self.wal_dir, "-s", start, "-e", end],
                capture_output=True,
                timeout=90,
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        ours = total = fpw = 0
        xids: set[bytes] = set()
        for line in out.splitlines():
            match = WAL_LINE.search(line)
            if match is None:
                continue
            size, xid = int(match.group(1)), match.group(2)
            total += size
            rel = WAL_REL.search(line)
            if rel is not None and int(rel.group(1)) == self.dboid:
                if xid != b"0":
                    xids.add(xid)
            elif xid == b"0" or xid not in xids:
                continue
            ours += size
            if b" FPW" in line:
                fpw += size
        if total == 0:
            return None
        return ours / total, (fpw / ours if ours else 0.0)


# --- counters -----------------------------------------------------------------------------------


class Counters:
    """Redis INFO and PostgreSQL statistics, read through this script's own connections."""

    def __init__(self, cluster: Cluster) -> None:
        assert cluster.redis is not None and cluster.database is not None
        self.cluster = cluster
        self.redis = cluster.redis.client()
        self.admin: asyncpg.Connection | None = None  # the `postgres` database: no counts here
        self.stats: asyncpg.Connection | None = None  # the bench database (its commits are ours)
        self.probe_queries = 0
        self.statements = False
        self.wal: WalReader | None = None

    @property
    def per_snapshot(self) -> int:
        """Transactions one settled() makes in the bench database (counted in the next one)."""
        return 2 if self.statements else 1

    async def open(self) -> set[int]:
        """Connects; counts the probe's queries; returns the backends' pids of this script."""
        assert self.cluster.database is not None and self.cluster.probe is not None
        self.admin = await asyncpg.connect(pg_url(PG_ADMIN_DB), timeout=10)
        self.stats = await asyncpg.connect(self.cluster.database.url, timeout=10)
        probe = self.cluster.probe
        probe_pid = int((await probe.fetch("SELECT pg_backend_pid()"))[0][0])
        fetch = probe.fetch

        async def counted(sql: str, *args: Any) -> list[tuple[Any, ...]]:
            self.probe_queries += 1
            return await fetch(sql, *args)

        probe.fetch = counted  # type: ignore[method-assign]
        dboid = int(
            await self.admin.fetchval(
                "SELECT oid FROM pg_database WHERE datname = $1", self.cluster.database.name
            )
        )
        self.wal = await WalReader.find(self.admin, dboid)
        preload = str(await self.admin.fetchval("SHOW shared_preload_libraries"))
        if "pg_stat_statements" in preload:
            try:
                await self.stats.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                self.statements = True
            except asyncpg.PostgresError:
                self.statements = False
        return {probe_pid, self.admin.get_server_pid(), self.stats.get_server_pid()}

    async def close(self) -> None:
        for conn in (self.admin, self.stats):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=5)
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    async def lsn(self) -> tuple[str, float]:
        """The WAL flush position (text, bytes)."""
        assert self.admin is not None
        row = await self.admin.fetchrow(
            "SELECT pg_current_wal_flush_lsn()::text AS t, "
            "pg_current_wal_flush_lsn() - '0/0'::pg_lsn AS n"
        )
        assert row is not None
        return str(row["t"]), float(row["n"])

    async def instant(self) -> dict[str, float]:
        """Counters that are current at once: WAL position, Redis commands and bytes."""
        _text, lsn = await self.lsn()
        out: dict[str, float] = {"wal_server_bytes": lsn}
        stats = await self.redis.info("stats")
        out["redis:net_in"] = float(stats["total_net_input_bytes"])
        out["redis:net_out"] = float(stats["total_net_output_bytes"])
        calls = 0.0
        for key, value in (await self.redis.info("commandstats")).items():
            if key.startswith("cmdstat_") and isinstance(value, dict):
                out[f"redis:{key[8:]}"] = float(value["calls"])
                calls += float(value["calls"])
        out["redis:calls"] = calls
        return out

    async def settled(self) -> dict[str, float]:
        """PostgreSQL's cumulative statistics of the bench database (read when the engine has
        been idle SETTLE_S: see the module's docstring)."""
        assert self.stats is not None
        row = await self.stats.fetchrow(
            """
            SELECT d.xact_commit, d.xact_rollback, d.tup_inserted, d.tup_updated, d.tup_deleted,
                   (SELECT coalesce(json_agg(json_build_array(relname, n_tup_ins, n_tup_upd,
                        n_tup_hot_upd, n_tup_del)), '[]') FROM pg_stat_user_tables) AS tables
            FROM pg_stat_database d WHERE d.datname = current_database()
            """,
            timeout=30,
        )
        assert row is not None
        out = {
            "pg:commits": float(row["xact_commit"]),
            "pg:rollbacks": float(row["xact_rollback"]),
            "pg:inserted": float(row["tup_inserted"]),
            "pg:updated": float(row["tup_updated"]),
            "pg:deleted": float(row["tup_deleted"]),
        }
        for name, ins, upd, hot, dele in json.loads(row["tables"]):
            out[f"pgt:{name}:ins"] = float(ins)
            out[f"pgt:{name}:upd"] = float(upd)
            out[f"pgt:{name}:hot"] = float(hot)
            out[f"pgt:{name}:del"] = float(dele)
        if self.statements:
            with contextlib.suppress(asyncpg.PostgresError):
                calls = await self.stats.fetchval(
                    "SELECT sum(calls) FROM pg_stat_statements WHERE dbid = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                )
                out["pg:statements"] = float(calls or 0)
        return out


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


# --- one cluster --------------------------------------------------------------------------------


async def measure_cluster(
    label: str,
    workers: int,
    redis: BenchRedis,
    redis_proc: Proc | None,
    repeats: int,
    notes: list[str],
) -> dict[str, Any]:
    cluster = Cluster(f"scaling-{label}", workers, redis, concurrency=CONCURRENCY)
    say(f"{label}: starting serve + {workers} workers")
    await cluster.start(postgres=True)
    counters = Counters(cluster)
    sampler: asyncio.Task[None] | None = None
    try:
        assert cluster.database is not None
        bench_pids = await counters.open()
        groups = {proc.pid: "serve" for proc in cluster.procs if proc.name == "serve"}
        groups.update({proc.pid: proc.name for proc in cluster.worker_procs})
        if redis_proc is not None:
            groups[redis_proc.pid] = "redis"
        redis_port = redis.port if isinstance(redis, PrivateRedis) else REDIS_PORT
        meter = Meter(cluster.database.name, groups, bench_pids, redis_port)
        if counters.wal is None:
            notes.append(
                f"{label}: pg_waldump or the WAL files are not at hand: WAL bytes are the "
                "server's (pg_current_wal_flush_lsn), other work's included"
            )
        sampler = asyncio.create_task(meter.run_sampler())
        tag = f"{label}-{int(time.time())}"

        sizes: dict[int, int] = {}
        for steps in WORKLOADS:
            warm_n = 150 if steps == 1 else 40
            warm = await throughput_run(
                cluster, f"warm-{steps}-{tag}", steps, warm_n, deadline_s=BATCH_DEADLINE_S
            )
            sizes[steps] = max(MIN_N, min(MAX_N, int(warm.rate * TARGET_S)))
            say(f"{label} warm-up {steps}-step: {warm.rate:.0f}/s -> batches of {sizes[steps]}")

        # The idle engine: its own rates, and the other work on the shared servers meanwhile.
        await asyncio.sleep(SETTLE_S)
        settled0 = await counters.settled()
        probe0 = counters.probe_queries
        before = await counters.instant()
        meter.begin()
        await asyncio.sleep(SETTLE_S)
        cpu, wall, busy = meter.end()
        moved = diff(await counters.instant(), before)
        settled_prev = await counters.settled()
        idle_settled = diff(settled_prev, settled0)
        idle_settled["pg:commits"] -= counters.per_snapshot + counters.probe_queries - probe0
        idle: dict[str, float] = {f"cpu:{k}": v / wall for k, v in cpu.items()}
        idle["machine_cores"] = busy / wall
        idle.update({k: v / wall for k, v in moved.items()})
        idle.update({k: v / SETTLE_S for k, v in idle_settled.items()})
        engine = sum(v for k, v in cpu.items() if k in ("serve", "postgres", *groups.values()))
        say(
            f"{label} idle: engine {engine / wall:.3f} cores, its Redis "
            f"{idle['redis:calls']:.0f} commands/s; the machine {busy / wall:.2f} cores busy, "
            f"WAL {idle['wal_server_bytes'] / 1024:.0f} KiB/s (server-wide)"
        )

        workloads: dict[str, Any] = {}
        for steps in WORKLOADS:
            batches: list[dict[str, float]] = []
            completed = 0
            probe0 = counters.probe_queries
            for r in range(repeats):
                lsn0, _ = await counters.lsn()
                before = await counters.instant()
                meter.begin()
                run = await throughput_run(
                    cluster, f"s{steps}-{r}-{tag}", steps, sizes[steps], deadline_s=BATCH_DEADLINE_S
                )
                cpu, wall, busy = meter.end()
                moved = diff(await counters.instant(), before)
                lsn1, _ = await counters.lsn()
                wal = None
                if counters.wal is not None:
                    wal = await asyncio.to_thread(counters.wal.share, lsn0, lsn1)
                    if wal is None:
                        notes.append(f"{label} {steps}-step batch {r + 1}: pg_waldump failed")
                say(
                    f"{label} {steps}-step #{r + 1}: {run.completed}/{run.requested} completed "
                    f"in {run.seconds:.2f} s = {run.rate:.0f}/s"
                    + (" (TIMED OUT)" if run.timed_out else "")
                )
                if run.not_completed or run.timed_out:
                    notes.append(
                        f"{label} {steps}-step batch {r + 1}: {run.not_completed} executions not "
                        f"completed{', timed out' if run.timed_out else ''} (not counted)"
                    )
                if run.completed == 0:
                    continue
                completed += run.completed
                batches.append(per_execution(run, cpu, wall, busy, moved, wal))
            # Once idle SETTLE_S, the statistics hold every batch (see the module's docstring).
            await asyncio.sleep(SETTLE_S)
            settled = await counters.settled()
            moved = diff(settled, settled_prev)
            settled_prev = settled
            own = counters.per_snapshot + counters.probe_queries - probe0
            pg: dict[str, float] = {}
            for key, value in moved.items():
                # less what the idle engine does in SETTLE_S (measured above), less our queries
                net = value - idle_settled.get(key, 0.0) - (own if key == "pg:commits" else 0)
                pg[key] = net / completed if completed else 0.0
            pg["bench_commits_subtracted"] = own
            pg["executions"] = completed
            workloads[str(steps)] = {"n": sizes[steps], "batches": batches, "pg": pg}
        return {"workers": workers, "idle": idle, "workloads": workloads}
    finally:
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        await counters.close()
        await cluster.stop()
        say(f"{label}: stopped")


def per_execution(
    run: Run,
    cpu: dict[str, float],
    wall: float,
    busy: float,
    moved: dict[str, float],
    wal: tuple[float, float] | None,
) -> dict[str, float]:
    """One batch's figures per completed execution."""
    n = run.completed
    out: dict[str, float] = {"rate": run.rate, "completed": float(n), "wall_s": wall}
    for kind, seconds in cpu.items():
        out[f"cpu:{kind}"] = seconds * 1000 / n
    out["cpu:workers"] = sum(v for k, v in out.items() if k.startswith("cpu:workers-"))
    out["cpu:total"] = sum(out.get(f"cpu:{k}", 0.0) for k in COMPONENTS)
    out["machine_cores"] = busy / wall
    ours = sum(v for k, v in cpu.items() if k != "pg-other")
    out["our_cores"] = ours / wall
    out["other_cores"] = max(0.0, (busy - ours) / wall)
    for key, value in moved.items():
        out[key] = value / n
    if wal is not None:
        out["wal_bytes"] = out["wal_server_bytes"] * wal[0]
        out["wal_fpw_share"] = wal[1]
    else:
        out["wal_bytes"] = out["wal_server_bytes"]
    return out


# --- commit rate --------------------------------------------------------------------------------


async def commit_probe() -> dict[str, float]:
    """Commits/s of one-row INSERT transactions (synchronous_commit as the server has it) from 1
    and from 16 connections, and PostgreSQL's CPU per commit, on a scratch database."""
    database = await ScalingDatabase("commit").create()
    conns: list[asyncpg.Connection] = []
    out: dict[str, float] = {}
    try:
        for _ in range(16):
            conns.append(await asyncpg.connect(database.url, timeout=10))
        await conns[0].execute("CREATE TABLE t (id bigserial PRIMARY KEY, v int, at timestamptz)")
        out["synchronous_commit_on"] = float(
            await conns[0].fetchval("SHOW synchronous_commit") == "on"
        )
        meter = Meter(database.name, {}, set(), REDIS_PORT)
        for clients, seconds in ((1, 2.0), (16, 3.0)):
            stop_at = time.monotonic() + seconds
            meter.begin()
            counts = await asyncio.wait_for(
                asyncio.gather(*(_insert_until(c, stop_at) for c in conns[:clients])),
                seconds + 30,
            )
            cpu, wall, _busy = meter.end()
            count = sum(counts)
            out[f"commits_per_s_{clients}"] = count / wall
            pg_cpu = cpu.get("postgres", 0.0) + cpu.get("pg-bg", 0.0)
            out[f"pg_cpu_ms_per_commit_{clients}"] = pg_cpu * 1000 / count if count else 0.0
            say(
                f"commit probe, {clients} connection(s): {count / wall:.0f} commits/s, "
                f"PostgreSQL CPU {out[f'pg_cpu_ms_per_commit_{clients}']:.3f} ms per commit"
            )
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)
        await database.drop()
    return out


async def _insert_until(conn: asyncpg.Connection, stop_at: float) -> int:
    count = 0
    while time.monotonic() < stop_at:
        await conn.execute("INSERT INTO t (v, at) VALUES (1, now())", timeout=30)
        count += 1
    return count


# --- the run ------------------------------------------------------------------------------------


async def pick_redis(wanted: int, notes: list[str]) -> BenchRedis:
    """The bench's Redis database: `wanted` unless another live bench holds it (its marker names
    a live process) or it holds foreign keys; then the first free one counting down from 12."""
    for db in dict.fromkeys([wanted, *range(12, 0, -1)]):
        redis = BenchRedis(db)
        client = redis.client()
        try:
            size = await client.dbsize()
            owner = await client.get(MARKER_KEY)
        finally:
            await client.aclose()
        if size and owner is None:
            continue
        if owner is not None:
            match = re.search(rb"pid (\d+)", owner)
            if match and int(match.group(1)) != os.getpid() and _alive(int(match.group(1))):
                continue
        if db != wanted:
            notes.append(f"Redis database {wanted} was in use by another bench; used {db}")
        await redis.claim()
        return redis
    raise BenchError("no free Redis database for the bench")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def drop_stale_scaling_databases() -> list[str]:
    """wfscale_* databases nobody is connected to: left by a run of this script that was killed
    (a live run always holds connections to its database)."""
    conn = await asyncpg.connect(pg_url(PG_ADMIN_DB), timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database d WHERE datname LIKE 'wfscale\\_%' AND NOT EXISTS "
            "(SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)"
        )
        names = [str(r["datname"]) for r in rows]
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"', timeout=60)
    finally:
        await conn.close(timeout=10)
    return names


async def other_activity(redis: BenchRedis) -> list[str]:
    """Other work on the shared servers now: PostgreSQL databases with connections, and Redis
    clients of other logical databases."""
    conn = await asyncpg.connect(pg_url(PG_ADMIN_DB), timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT datname, count(*) AS n FROM pg_stat_activity WHERE datname IS NOT NULL "
            "AND datname <> current_database() AND datname NOT LIKE 'wfscale\\_%' "
            "AND pid <> pg_backend_pid() GROUP BY datname ORDER BY datname"
        )
    finally:
        await conn.close(timeout=10)
    found = [f"PostgreSQL {r['datname']} ({r['n']} connections)" for r in rows]
    client = redis.client()
    try:
        per_db: dict[int, int] = defaultdict(int)
        for entry in await client.client_list():
            db = int(entry.get("db", -1))
            if db != redis.db:
                per_db[db] += 1
    finally:
        await client.aclose()
    found += [f"Redis database {db} ({n} clients)" for db, n in sorted(per_db.items())]
    return found


def machine_facts() -> dict[str, Any]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git": commit + (" + uncommitted changes in src/" if dirty else ""),
        "python": platform.python_version(),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    notes: list[str] = []
    results: dict[str, Any] = {"machine": machine_facts(), "notes": notes, "clusters": {}}
    stale = await drop_stale_scaling_databases()
    if stale:
        notes.append(f"dropped databases left by a killed run of this script: {stale}")
    shared = await pick_redis(args.redis_db, notes)
    results["others_at_start"] = await other_activity(shared)
    redis: BenchRedis = shared
    redis_proc: Proc | None = None
    if not args.shared_redis:
        try:
            workdir = Path(tempfile.mkdtemp(prefix="wfscale-redis-"))
            redis_proc, redis, config = await start_private_redis(shared.db, workdir)
            await redis.claim()
            results["redis"] = f"a redis-server of its own ({config})"
        except (BenchError, OSError) as exc:
            redis_proc, redis = None, shared
            notes.append(f"could not start a redis-server of its own ({exc}): used the shared one")
    if redis_proc is None:
        results["redis"] = f"the shared server, database {shared.db} (server-wide counters)"
    results["redis_db"] = redis.db
    conn = await asyncpg.connect(pg_url(PG_ADMIN_DB), timeout=10)
    try:
        results["postgresql"] = await conn.fetchval("SHOW server_version")
        settings = {}
        for name in ("synchronous_commit", "fsync", "full_page_writes", "autovacuum", "wal_level"):
            settings[name] = await conn.fetchval(f"SHOW {name}")
        results["pg_settings"] = settings
        results["pg_stat_statements"] = "pg_stat_statements" in str(
            await conn.fetchval("SHOW shared_preload_libraries")
        )
    finally:
        await conn.close(timeout=10)
    results["redis_version"] = await redis.server_version()
    try:
        for label, workers in CLUSTERS:
            if time.monotonic() - STARTED > args.budget - 100:
                notes.append(f"{label}: skipped, the time budget of {args.budget:.0f} s is spent")
                continue
            try:
                results["clusters"][label] = await measure_cluster(
                    label, workers, redis, redis_proc, args.repeats, notes
                )
            except (BenchError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                notes.append(f"{label} FAILED: {type(exc).__name__}: {str(exc)[:1500]}")
                say(f"{label} FAILED: {type(exc).__name__}: {exc}")
        results["others_at_end"] = await other_activity(shared)
        if time.monotonic() - STARTED < args.budget:
            results["commit_probe"] = await commit_probe()
        else:
            notes.append("commit probe skipped: the time budget is spent")
    finally:
        if redis_proc is not None:
            await asyncio.to_thread(redis_proc.stop, 5.0)
        await shared.clean(keep_marker=False)
    results["elapsed_s"] = time.monotonic() - STARTED
    return results


# --- the report ---------------------------------------------------------------------------------


def med(batches: list[dict[str, float]], key: str) -> float:
    values = [b.get(key, 0.0) for b in batches]
    return statistics.median(values) if values else 0.0


def spread(batches: list[dict[str, float]], key: str, fmt: str) -> str:
    values = [b.get(key, 0.0) for b in batches]
    if not values:
        return "-"
    mid = format(statistics.median(values), fmt)
    if len(values) == 1:
        return mid
    return f"{mid} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def columns(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for label, cluster in results["clusters"].items():
        for steps, workload in cluster["workloads"].items():
            if workload["batches"]:
                name = f"{cluster['workers']} `workers`, {steps}-step"
                out.append((name, {**workload, "label": label, "steps": int(steps)}))
    return out


def cost(workload: dict[str, Any]) -> dict[str, float]:
    """The model's per-execution inputs (medians of the batches): CPU ms, counts, bytes."""
    b = workload["batches"]
    pg = workload["pg"]
    return {
        "workers": med(b, "cpu:workers"),
        "serve": med(b, "cpu:serve"),
        "pg": med(b, "cpu:postgres") + med(b, "cpu:pg-bg"),
        "redis": med(b, "cpu:redis"),
        "total": med(b, "cpu:total"),
        "commits": pg.get("pg:commits", 0.0),
        "wal": med(b, "wal_bytes"),
        "wal_fpw": med(b, "wal_fpw_share"),
        "inserted": pg.get("pg:inserted", 0.0),
        "rows": sum(pg.get(f"pg:{k}", 0.0) for k in ("inserted", "updated", "deleted")),
        "events": pg.get("pgt:execution_events:ins", 0.0),
        "logs": pg.get("pgt:execution_logs:ins", 0.0),
        "redis_calls": med(b, "redis:calls"),
        "evalsha": med(b, "redis:evalsha"),
        "rate": med(b, "rate"),
        "other_cores": med(b, "other_cores"),
        "machine_cores": med(b, "machine_cores"),
    }


def measured_table(results: dict[str, Any]) -> str:
    cols = columns(results)
    if not cols:
        return "(nothing was measured)\n"
    head = "| per completed execution | " + " | ".join(name for name, _ in cols) + " |\n"
    head += "|---" * (len(cols) + 1) + "|\n"
    rows: list[str] = []

    def row(title: str, cell: Callable[[dict[str, Any]], str]) -> None:
        rows.append(f"| {title} | " + " | ".join(cell(w) for _, w in cols) + " |")

    def ms(key: str) -> Callable[[dict[str, Any]], str]:
        def cell(w: dict[str, Any]) -> str:
            if not any(key in b for b in w["batches"]):
                return "-"
            return f"{med(w['batches'], key):.2f}"

        return cell

    def pg(key: str, fmt: str) -> Callable[[dict[str, Any]], str]:
        return lambda w: format(w["pg"].get(key, 0.0), fmt)

    def per_cmd(cmd: str) -> Callable[[dict[str, Any]], str]:
        return lambda w: f"{med(w['batches'], 'redis:' + cmd):.2f}"

    def median(key: str, fmt: str) -> Callable[[dict[str, Any]], str]:
        return lambda w: format(med(w["batches"], key), fmt)

    row("executions/s (median, min-max)", lambda w: spread(w["batches"], "rate", ".0f"))
    row("executions per batch x batches", lambda w: f"{w['n']} x {len(w['batches'])}")
    for kind in COMPONENTS:
        row(f"CPU ms: {LABELS[kind]}", ms(f"cpu:{kind}"))
        if kind == "workers":
            for n in (1, 2):
                key = f"cpu:workers-{n}"
                if any(key in b for _, w in cols for b in w["batches"]):
                    row(f"&nbsp;&nbsp;of which `workers-{n}`", ms(key))
    row(
        "**CPU ms, all of the above**",
        lambda w: f"**{spread(w['batches'], 'cpu:total', '.2f')}**",
    )
    row(
        "machine: cores busy, of which others'",
        lambda w: (
            f"{med(w['batches'], 'machine_cores'):.2f}, {med(w['batches'], 'other_cores'):.2f}"
        ),
    )
    row("PostgreSQL commits", pg("pg:commits", ".2f"))
    if any("pg:statements" in w["pg"] for _, w in cols):
        row("PostgreSQL statements", pg("pg:statements", ".1f"))
    row(
        "PostgreSQL rows inserted / updated / deleted",
        lambda w: (
            f"{w['pg'].get('pg:inserted', 0):.1f} / {w['pg'].get('pg:updated', 0):.1f} / "
            f"{w['pg'].get('pg:deleted', 0):.1f}"
        ),
    )
    row("WAL bytes (the bench database's records)", median("wal_bytes", ",.0f"))
    row("&nbsp;&nbsp;of which full-page images", median("wal_fpw_share", ".0%"))
    row("WAL bytes, server-wide (flush LSN)", median("wal_server_bytes", ",.0f"))
    row("Redis commands (all)", median("redis:calls", ".1f"))
    for cmd in top_redis_commands(cols):
        row(f"&nbsp;&nbsp;`{cmd}`", per_cmd(cmd))
    row(
        "Redis bytes received / sent",
        lambda w: (
            f"{med(w['batches'], 'redis:net_in'):,.0f} / {med(w['batches'], 'redis:net_out'):,.0f}"
        ),
    )
    return head + "\n".join(rows) + "\n"


SUMMARY_KEYS = ("redis:calls", "redis:net_in", "redis:net_out")


def top_redis_commands(cols: list[tuple[str, dict[str, Any]]], limit: int = 12) -> list[str]:
    totals: dict[str, float] = defaultdict(float)
    for _, w in cols:
        for key in {k for b in w["batches"] for k in b}:
            if key.startswith("redis:") and key not in SUMMARY_KEYS:
                name = key.removeprefix("redis:")
                totals[name] = max(totals[name], med(w["batches"], key))
    ranked = sorted(((v, k) for k, v in totals.items() if v >= 0.05), reverse=True)
    return [k for _v, k in ranked[:limit]]


def tables_table(results: dict[str, Any]) -> str:
    cols = columns(results)

    def weight(table: str) -> float:
        return max(
            sum(float(w["pg"].get(f"pgt:{table}:{op}", 0.0)) for op in ("ins", "upd", "del"))
            for _, w in cols
        )

    names = sorted({k.split(":")[1] for _, w in cols for k in w["pg"] if k.startswith("pgt:")})
    names.sort(key=weight, reverse=True)
    lines = [
        "| table: rows inserted / updated (of which HOT) / deleted | "
        + " | ".join(n for n, _ in cols)
        + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for table in names:
        if weight(table) < 0.05:
            continue
        cells = []
        for _, w in cols:
            g = w["pg"].get
            ins, upd = g(f"pgt:{table}:ins", 0), g(f"pgt:{table}:upd", 0)
            hot, dele = g(f"pgt:{table}:hot", 0), g(f"pgt:{table}:del", 0)
            cells.append(f"{ins:.2f} / {upd:.2f} ({hot:.2f}) / {dele:.2f}")
        lines.append(f"| `{table}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


SHARED = {
    "redis": "Redis (its one thread)",
    "pg_cpu": f"PostgreSQL CPU ({PG_CORES} cores)",
    "pg_commits": f"PostgreSQL commits ({COMMIT_CEILING:,}/s)",
    "pg_wal": f"PostgreSQL WAL ({WAL_CEILING / 1e6:.0f} MB/s)",
}
INF = float("inf")


def ceilings(c: dict[str, float]) -> dict[str, float]:
    """Executions/s each shared component allows (the `workers` scale with their cores)."""

    def per(capacity: float, used: float) -> float:
        return capacity / used if used > 0 else INF

    return {
        "redis": per(1000, c["redis"]),
        "pg_cpu": per(PG_CORES * 1000, c["pg"]),
        "pg_commits": per(COMMIT_CEILING, c["commits"]),
        "pg_wal": per(WAL_CEILING, c["wal"]),
    }


def at_cores(c: dict[str, float], cores: int, without: tuple[str, ...] = ()) -> dict[str, Any]:
    """The rate W worker cores run at, and what limits it (leaving out the components named
    in `without`: as if they had been scaled out)."""
    workers = cores * 1000 / c["workers"] if c["workers"] > 0 else INF
    limits = {"workers": workers, **ceilings(c)}
    for key in without:
        limits.pop(key, None)
    first = min(limits, key=lambda k: limits[k])
    rate = limits[first]
    return {
        "cores": cores,
        "workers": workers,
        "rate": rate,
        "first": first,
        "api_cores": rate * c["serve"] / 1000,
        "pg_cores": rate * c["pg"] / 1000,
        "redis_busy": rate * c["redis"] / 1000,
        "commits": rate * c["commits"],
        "wal": rate * c["wal"],
    }


def fmt_rate(value: float) -> str:
    return "unbounded" if value == INF else f"{value:,.0f}"


def component_name(key: str) -> str:
    return "`workers` cores" if key == "workers" else SHARED[key]


def model_source(results: dict[str, Any]) -> dict[str, Any] | None:
    clusters = results["clusters"]
    found: dict[str, Any] | None = clusters.get(MODEL_FROM) or next(iter(clusters.values()), None)
    return found


def model_section(results: dict[str, Any]) -> tuple[str, list[str]]:
    source = model_source(results)
    if source is None:
        return "(no cluster was measured: no model)\n", []
    text: list[str] = []
    conclusions: list[str] = []
    for steps, workload in source["workloads"].items():
        if not workload["batches"]:
            continue
        c = cost(workload)
        caps = ceilings(c)
        ten = steps != "1"
        text.append(
            f"**{steps}-step executions.** Per execution (the {source['workers']}-`workers` run): "
            f"`workers` {c['workers']:.2f} ms, `serve` {c['serve']:.2f} ms, PostgreSQL "
            f"{c['pg']:.2f} ms, Redis {c['redis']:.2f} ms of CPU; {c['commits']:.2f} commits, "
            f"{c['wal'] / 1024:.1f} KiB of WAL.\n"
        )
        text.append("| shared component | ceiling, executions/s |" + (" steps/s |" if ten else ""))
        text.append("|---|---|" + ("---|" if ten else ""))
        for key in sorted(caps, key=lambda k: caps[k]):
            extra = f" {fmt_rate(caps[key] * int(steps))} |" if ten else ""
            text.append(f"| {SHARED[key]} | {fmt_rate(caps[key])} |{extra}")
        text.append("")
        text.append(
            "| worker cores W | `workers` allow | the cluster runs | first to saturate | "
            "API cores needed | PostgreSQL cores busy | commits/s | WAL MB/s | "
            "with Redis sharded: runs | then first | Redis threads at 70% |"
        )
        text.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for cores in WORKER_CORES:
            p = at_cores(c, cores)
            q = at_cores(c, cores, without=("redis",))
            threads = math.ceil(q["rate"] * c["redis"] / 1000 / 0.7) if q["rate"] != INF else 0
            text.append(
                f"| {cores} | {fmt_rate(p['workers'])} | **{fmt_rate(p['rate'])}/s** | "
                f"{component_name(p['first'])} | {p['api_cores']:.1f} | {p['pg_cores']:.1f} | "
                f"{p['commits']:,.0f} | {p['wal'] / 1e6:.0f} | {fmt_rate(q['rate'])}/s | "
                f"{component_name(q['first'])} | {threads} |"
            )
            conclusions.append(
                f"{steps}-step, W={cores}: **{fmt_rate(p['rate'])} executions/s**, "
                f"{component_name(p['first'])} first; with Redis sharded "
                f"{fmt_rate(q['rate'])}/s, then {component_name(q['first'])}"
            )
        half = ceilings({**c, "commits": c["commits"] * 2})["pg_commits"]
        text.append(
            f"\nThe commit ceiling is the least certain input: at half the assumed "
            f"{COMMIT_CEILING:,}/s it would allow {fmt_rate(half)} executions/s.\n"
        )
    probe = results.get("commit_probe")
    if probe:
        one = probe.get("commits_per_s_1", 0.0)
        text.append(
            f"The commit ceiling measured on this machine, for scale (one-row INSERT "
            f"transactions, synchronous_commit "
            f"{'on' if probe.get('synchronous_commit_on') else 'off'}): {one:,.0f} commits/s "
            f"from one connection (a WAL flush takes {1000 / max(one, 1):.2f} ms here), "
            f"{probe.get('commits_per_s_16', 0):,.0f}/s from 16 connections (group commit; "
            f"bounded by the 2 shared cores: {probe.get('pg_cpu_ms_per_commit_16', 0):.3f} ms "
            f"of PostgreSQL CPU per commit).\n"
        )
    return "\n".join(text), conclusions


def check_section(results: dict[str, Any]) -> str:
    lines = [
        "| run | CPU ms per execution, all processes | predicted on 2 idle cores | "
        "cores others left | predicted on those | measured | measured / predicted | "
        "machine cores busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, w in columns(results):
        c = cost(w)
        idle_pred = 2000 / c["total"] if c["total"] else 0.0
        left = max(0.0, 2 - c["other_cores"])
        pred = left * 1000 / c["total"] if c["total"] else 0.0
        lines.append(
            f"| {name} | {c['total']:.2f} | {idle_pred:.0f}/s | {left:.2f} | {pred:.0f}/s | "
            f"{c['rate']:.0f}/s | {c['rate'] / pred if pred else 0:.0%} | "
            f"{c['machine_cores']:.2f} |"
        )
    cross = []
    one, two = results["clusters"].get("1w"), results["clusters"].get("2w")
    if one and two:
        for steps in one["workloads"]:
            a, b = one["workloads"][steps], two["workloads"].get(steps)
            if not (a["batches"] and b and b["batches"]):
                continue
            ca, cb = cost(a), cost(b)
            pred = max(0.0, 2 - cb["other_cores"]) * 1000 / ca["total"] if ca["total"] else 0.0
            cross.append(
                f"- {steps}-step with 2 `workers`, predicted from the 1-`workers` run's CPU per "
                f"execution ({ca['total']:.2f} ms, others using {ca['other_cores']:.2f} cores) "
                f"on the cores others left it: {pred:.0f}/s; measured {cb['rate']:.0f}/s "
                f"({cb['rate'] / pred if pred else 0:.0%}; its own CPU per execution was "
                f"{cb['total']:.2f} ms, others using {cb['other_cores']:.2f} cores)."
            )
    return "\n".join(lines) + "\n" + ("\n" + "\n".join(cross) + "\n" if cross else "")


def idle_lines(results: dict[str, Any]) -> str:
    out = []
    for label, cluster in results["clusters"].items():
        idle = cluster["idle"]
        engine = sum(v for k, v in idle.items() if k in ("cpu:serve", "cpu:postgres"))
        engine += sum(v for k, v in idle.items() if k.startswith("cpu:workers-"))
        out.append(
            f"  - before the {label} batches, {SETTLE_S:.0f} s with our engine idle: its "
            f"processes and backends {engine:.3f} cores, its redis-server "
            f"{idle.get('cpu:redis', 0):.3f} cores and {idle.get('redis:calls', 0):,.0f} "
            f"commands/s; the machine {idle.get('machine_cores', 0):.2f} cores busy, the "
            f"PostgreSQL server's WAL {idle.get('wal_server_bytes', 0) / 1024:,.0f} KiB/s"
        )
    return "\n".join(out)


REMEDIES = {
    "workers": (
        "More `workers` processes, on more machines: they share nothing "
        "but PostgreSQL and Redis, so the model has them linear. And less CPU per job "
        "(bench/PROFILE.md: bullmq's Python client, SQLAlchemy's execution path and building "
        "the log and event rows are most of the {workers:.2f} ms)."
    ),
    "redis": (
        "**Redis** ({redis:.2f} ms of its one thread per execution; {calls:.0f} commands "
        "counting those run inside bullmq's Lua scripts, {evalsha:.1f} script calls). Both "
        "queues, the event pub/sub and the leader lock share one Redis today. In order: (a) give "
        "`workflow-dispatch` and `workflow-execution` each their own instance (the engine takes "
        "one REDIS_URL: a URL per queue is a small change in `queue/bullmq.py`), which about "
        "halves the load per thread; (b) shard the execution queue: K queues "
        "`workflow-execution-<k>` chosen by a hash of the execution id, each on its own "
        "instance or on a Redis Cluster (the table above gives the Redis threads needed at 70% "
        "busy once Redis is no limit). BullMQ runs multi-key Lua scripts, so all of one "
        "queue's keys must hash to one slot: a hash-tagged prefix (`{{bull}}` for one node, "
        "`{{bull-k}}` per shard) keeps each queue on one node and K queues spread over K nodes; "
        "each `workers` process consumes a subset of the K queues, so no queue has a single "
        "consumer. (c) Fewer commands per execution: two hops per execution (dispatch, then "
        "execution) double the queue work, and the dispatch hop only reads the execution's "
        "state and forwards it (`engine/workers.py`, `_dispatch`): the API could add an "
        "execution straight to the execution queue and leave those checks to the claim. "
        "Redis's I/O threads (`io-threads`) also take the socket reads and writes off the main "
        "thread, which is much of the cost of many small commands. The Redis CPU per execution "
        "was measured on a busy shared machine, at a low rate: a dedicated core is faster, and "
        "under more load each wake-up of Redis serves more commands, so this ceiling is likely "
        "low, but not by an order of magnitude: about {evalsha:.0f} Lua scripts per execution "
        "(each job added, then completed with the next one fetched, on each of the two "
        "queues) are most of the work."
    ),
    "pg_cpu": (
        "**PostgreSQL CPU** ({pg:.2f} ms per execution, {rows:.0f} rows written, of which "
        "{ev:.0f} `execution_events` and {logs:.0f} `execution_logs` inserts). First write "
        "less: a log line is already stored once (its `execution_logs` row carries its event's "
        "seq); no persisted event for what the status columns already record "
        "(started/completed) would remove a further two inserts per execution. "
        "Then read the API's lists and statistics from a replica. "
        "Then shard: a primary per tenant (no statement of the hot path joins two tenants' "
        "executions), or Citus with `executions`, `execution_steps`, `execution_logs` and "
        "`execution_events` distributed by execution id and co-located, so each hot statement "
        "goes to one shard (the writer's statements that batch several executions would be "
        "grouped per shard)."
    ),
    "pg_commits": (
        "**Commits** ({commits:.2f} per execution: the engine already shares one statement, "
        "one commit, between concurrent executions' writes). With synchronous_commit on each "
        "commit waits for a WAL flush that group commit shares. Next: bigger batches under load, "
        "`synchronous_commit = off` for transactions that only write log and event rows (they "
        "are observability: a crash would lose the last few hundred ms of them, never an "
        "execution's state, which keeps synchronous commits), and `commit_delay` on the server. "
        "Past one primary: the sharding above."
    ),
    "pg_wal": (
        "**WAL** ({wal_kib:.1f} KiB per execution, about {wal_row:.0f} bytes per row written "
        "with its index entries; {fpw:.0%} in full-page images here, where the tables are new "
        "and small: on big tables the first change to each page after a checkpoint writes the "
        "whole page, which can double the WAL): fewer rows (above), fewer indexes on the "
        "append-only tables (each index entry is WAL too), `wal_compression = lz4`, and longer "
        "checkpoint intervals. A standby receives the same bytes over the network."
    ),
}


def design_section(results: dict[str, Any]) -> str:
    source = model_source(results)
    workload = source["workloads"].get("1") if source else None
    if not workload or not workload["batches"]:
        return "## What the design does when a component saturates\n\n(no 1-step figures)\n"
    c = cost(workload)
    caps = ceilings(c)
    order = sorted(caps, key=lambda k: caps[k])
    first = caps[order[0]]
    until = first * c["workers"] / 1000 if first != INF else INF
    values = {
        "workers": c["workers"],
        "redis": c["redis"],
        "calls": c["redis_calls"],
        "evalsha": c["evalsha"],
        "pg": c["pg"],
        "rows": c["rows"],
        "ev": c["events"],
        "logs": c["logs"],
        "commits": c["commits"],
        "wal_kib": c["wal"] / 1024,
        "wal_row": c["wal"] / c["rows"] if c["rows"] else 0.0,
        "fpw": c["wal_fpw"],
    }
    lines = [
        "## What the design does when a component saturates",
        "",
        f"In the order the model gives for 1-step executions (10-step ones cost "
        f"{cost_ratio(source):.1f}x as much per execution, in about the same proportions):",
        "",
        f"1. **Up to about {fmt_rate(until)} worker cores** ({fmt_rate(first)} executions/s, "
        f"with about {c['serve']:.1f} API cores per 1,000/s beside them) the `workers` are the "
        "limit and the engine scales by adding them. " + REMEDIES["workers"].format(**values),
    ]
    for n, key in enumerate(order, start=2):
        if caps[key] == INF:
            continue
        prose = REMEDIES[key].format(**values)
        cores = caps[key] * c["workers"] / 1000
        lines.append(
            f"{n}. **At {fmt_rate(caps[key])} executions/s** (about {cores:,.0f} worker cores): "
            + prose
        )
    rows_s = first * c["inserted"] if first != INF else 0.0
    lines += [
        "",
        "At any of these rates, retention: the engine inserts "
        f"{c['inserted']:.0f} rows per 1-step execution, {rows_s:,.0f} rows/s at "
        f"{fmt_rate(first)} executions/s, and removes as many by DELETE when they age out "
        "(bench/PRUNE.md: about 15,000 rows/s removed here, beside the load). Partitioning "
        "`execution_events` and `execution_logs` (and `executions` with its steps) by day turns "
        "retention into dropping a partition, and keeps the indexes of the hot partition small.",
        "",
        "Past these first ceilings the model is only as good as its linearity: lock contention "
        "on hot rows and keys, the network round trips per execution (each hop is a Redis round "
        "trip or two and a PostgreSQL one), and a PostgreSQL whose working set no longer fits "
        "in memory are not in it, and need measuring on the real hardware before a design is "
        "chosen.",
    ]
    return "\n".join(lines) + "\n"


def cost_ratio(source: dict[str, Any] | None) -> float:
    if source is None:
        return 0.0
    one, ten = source["workloads"].get("1"), source["workloads"].get("10")
    if not (one and ten and one["batches"] and ten["batches"]):
        return 0.0
    a, b = cost(one)["total"], cost(ten)["total"]
    return b / a if a else 0.0


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    model_text, conclusions = model_section(results)
    notes = "\n".join(f"  - {n}" for n in results["notes"]) or "  - none"
    others = ", ".join(results.get("others_at_start", [])) or "none"
    others_end = ", ".join(results.get("others_at_end", [])) or "none"
    pgs = results.get("pg_settings", {})
    statements = (
        "pg_stat_statements is loaded on this server: see its row"
        if results.get("pg_stat_statements")
        else "pg_stat_statements is not loaded on this server, so statements are not counted"
    )
    repeats = max((len(w["batches"]) for _, w in columns(results)), default=0)
    return f"""# Scaling past one machine (bench/scaling.py)

Made by `bench/scaling.py` on {m["date"]} in {results.get("elapsed_s", 0):.0f} s, engine commit
{m["git"]}: {m["cores"]} cores ({m["cpu"]}) **shared with other work** (see the caveats),
PostgreSQL {results.get("postgresql", "?")} (synchronous_commit {pgs.get("synchronous_commit")},
fsync {pgs.get("fsync")}, full_page_writes {pgs.get("full_page_writes")}, autovacuum
{pgs.get("autovacuum")}), Redis {results.get("redis_version", "?")}. `.venv/bin/python
bench/scaling.py` (about 3.5 min) measures again and writes this file, prose included.

## What one execution costs each component (measured)

The distributed engine as a user runs it: `workflow-engine serve` + 1 or 2 `workflow-engine
workers` processes, EXECUTION_CONCURRENCY {CONCURRENCY}, a fresh PostgreSQL database, and
Redis: {results.get("redis", "?")}. Batches of no-op `transform` executions triggered over
HTTP as fast as the API takes them (`engine_bench.throughput_run`; every execution checked in
the database: `completed`, with all its steps); each figure is the median of the batches
(executions/s with min-max), divided by the executions completed.

{measured_table(results)}
- CPU: utime+stime from `/proc/<pid>/stat` of every process of a component, before and after
  each batch (sampled every {SAMPLE_S} s, so that backends that come or go count). `workers`:
  each process's group. PostgreSQL backends: those whose title names the bench's database
  (except this script's own connections, counted under "bench process"). PostgreSQL
  background: postmaster, WAL writer, checkpointer, background writer (server-wide).
  redis-server: the bench's own server (a process of its own, started with the shared server's
  persistence and I/O-thread settings), so its CPU and commands are the engine's alone.
  "bench process": this script (the HTTP load generator, its polling of the database) and its
  backends. 10 ms ticks, over batches of a few seconds.
- Commits and rows: `pg_stat_database` and `pg_stat_user_tables` of the bench's database,
  over all the batches of a workload together: backends report these statistics up to 10 s
  late, so they are read after the engine has idled {SETTLE_S:.0f} s, and what the idle
  engine does in {SETTLE_S:.0f} s and this script's own transactions are subtracted. A row is
  a heap tuple; its index entries are not counted. Commits stand for statements here, since
  the engine runs most statements without BEGIN/COMMIT; {statements}.
- WAL: the server's WAL between the flush positions before and after each batch
  (`pg_current_wal_flush_lsn()`), times the share of its record bytes that belong to the
  bench's database (`pg_waldump` over the WAL files: records touching the database's blocks,
  and the commits of their transactions). The server-wide figure, other work's included, is
  given too.
- Redis: `INFO commandstats` and `INFO stats` before and after each batch. Commands run inside
  bullmq's Lua scripts count under their own names and in "all", besides the `evalsha` that
  ran them.

Rows written per execution, by table:

{tables_table(results)}
## The model: the rate each component allows with more machines

Assumptions:
- **`workers`**: one `workers` process per core (each is one Python event loop). They share
  nothing but PostgreSQL and Redis, so W cores allow W x 1000 / (`workers` CPU ms per
  execution). The API (`serve`) is scaled alongside behind a load balancer: it sets no
  ceiling; the tables give the cores it needs.
- **Redis** runs commands on one thread: it allows 1000 / (Redis CPU ms per execution) at
  100% busy (plan for about 70%). Both queues are in one Redis, as the engine runs today.
- **PostgreSQL**: one primary with **{PG_CORES} cores**, each as fast as this machine's (its
  CPU per execution as measured here: backends and background); a **commit ceiling of
  {COMMIT_CEILING:,}/s**, assumed, not measured (a pgbench-class figure for a {PG_CORES}-core
  server on NVMe with synchronous_commit on and group commit; this machine's own probe is
  below, for scale); and **{WAL_CEILING / 1e6:.0f} MB/s of WAL**, assumed (what a primary,
  its synchronous standby and a WAL archive sustain without falling behind).
- Costs per execution stay as measured. They will not quite: under more load more operations
  share a statement or a Redis pipeline (`batching.py`), so costs fall a little; bigger
  tables cost more per row (index depth, cache misses), and on a dedicated server core the
  CPU per execution is likely lower than on this shared one. First order only.

{model_text}
Conclusions, from the figures above (the rate and the component that saturates first at
W = {", ".join(str(w) for w in WORKER_CORES)} worker cores):
{chr(10).join("- " + line for line in conclusions)}

### Does the model hold on this machine?

On these 2 cores every component shares the same cores, so when the engine is CPU-bound its
rate is the cores it gets divided by the CPU per execution of all processes (the load
generator's too):

{check_section(results)}
When the machine is fully busy, "predicted on those" equals the measured rate by
construction (within a few percent: the rate's window ends at the last completion, the CPU
window a little later): the check is then that the machine was CPU-bound (busy cores near 2),
which is what the model assumes of each component at scale, and that the per-component
figures account for all of it. The cross-prediction (costs from one run, the rate of the
other) is the independent part, and it is only as good as the CPU per execution is stable:
on this shared machine it rises when other work takes more of the cores (cache and scheduler
contention), so the model's costs (from the {MODEL_FROM[0]}-`workers` run) are more likely high
than low for a dedicated server. What 2 cores cannot check is
the linearity in worker cores: that needs more machines.

{design_section(results)}
## Caveats

- This machine has {m["cores"]} cores and is shared: other benchmarks ran on it during this
  run (PostgreSQL databases with connections besides this run's, at the start: {others}; at
  the end: {others_end}). Cores others used during the batches are in the tables (from
  /proc/stat, less our processes). They slow the rate, and they raise the CPU per execution
  too (cache and scheduler contention: see the cross-prediction in the check above), by as
  much as a quarter between runs here.
- PostgreSQL's background processes are server-wide (the WAL bytes are not: see above).
  What the servers did while our engine idled:
{idle_lines(results)}
- Figures are medians of {repeats} batches per workload; commits and rows are over all
  batches of a workload together.
- Notes from this run:
{notes}
"""


def print_table(results: dict[str, Any]) -> None:
    print()
    print(measured_table(results))
    print(tables_table(results))
    print(check_section(results))
    _text, conclusions = model_section(results)
    for line in conclusions:
        print("model:", line)
    for note in results["notes"]:
        print("NOTE", note)


async def guarded(args: argparse.Namespace) -> dict[str, Any]:
    task: asyncio.Task[dict[str, Any]] = asyncio.create_task(run(args))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await asyncio.wait_for(task, timeout=args.budget + 30)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=3, help="measured batches per workload")
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument(
        "--shared-redis",
        action="store_true",
        help="use the shared redis-server (its counters are server-wide) instead of one of its own",
    )
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds (soft)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--json", type=Path, help="also save the raw figures there")
    parser.add_argument(
        "--report-from", type=Path, metavar="JSON", help="run nothing: report saved figures"
    )
    args = parser.parse_args()
    if args.report_from is not None:
        results = json.loads(args.report_from.read_text())
    else:
        try:
            results = asyncio.run(guarded(args))
        except (asyncio.CancelledError, TimeoutError):
            say("stopped before the end (SIGTERM or the time cap): everything it started is gone")
            return 1
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=1))
    print_table(results)
    if not args.no_write:
        SECTION.write_text(render(results))
        say(f"wrote {SECTION.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
