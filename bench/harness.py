"""Bench plumbing shared by the runner: processes, databases, Redis keys, statistics.

Everything here is bounded (every wait has a timeout) and only talks to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
ENGINE_BIN = ROOT / ".venv" / "bin" / "workflow-engine"
PEERS_VENV = BENCH / ".venv-peers"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "root")
PG_ADMIN_DB = os.environ.get("BENCH_PG_ADMIN_DB", "postgres")
REDIS_HOST = os.environ.get("BENCH_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT", "6379"))

# Every key a bench run creates in its Redis database matches one of these; cleanup deletes only
# these (never FLUSHDB / FLUSHALL on the shared server).
BENCH_KEY_PATTERNS = (
    "bull:workflow-*",  # our engine (its queue names and prefix are fixed)
    "wfbench*",  # peers: bullmq prefix, celery queue, marker
    "celery-task-meta-*",
    "_kombu.binding*",
    "unacked*",
)
MARKER_KEY = "wfbench:owner"


class BenchError(RuntimeError):
    pass


# --- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Figure:
    """One figure measured `len(values)` times: median and spread (min-max)."""

    values: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)


# --- ports, processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Proc:
    """A child process in its own session; stopped (TERM, then KILL) by its own process group id,
    which is the id of the process this harness started."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path, log: Path):
        self.name = name
        self.log = log
        self._log_file = log.open("wb")
        self.popen = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_line(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.output():
                return
            if not self.alive():
                raise BenchError(f"{self.name} exited early:\n{self.output()[-3000:]}")
            time.sleep(0.05)
        raise BenchError(f"{self.name}: no {needle!r} after {timeout} s:\n{self.output()[-3000:]}")

    def stop(self, grace: float = 10.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        # Whatever is left of its group (children of a pool) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        self._log_file.close()


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for {pid}")


# --- PostgreSQL -------------------------------------------------------------------------------


def pg_url(db: str, *, driver: str = "postgresql") -> str:
    return f"{driver}://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(pg_url(PG_ADMIN_DB), timeout=10)
    try:
        await conn.execute(sql, timeout=120)
    finally:
        await conn.close(timeout=10)


class PgDatabase:
    """A PostgreSQL database made for one benchmark and dropped afterwards."""

    def __init__(self, purpose: str) -> None:
        self.name = f"wfbench_{purpose}_{uuid.uuid4().hex[:8]}"
        self.url = pg_url(self.name)

    async def create(self) -> PgDatabase:
        await _admin(f'CREATE DATABASE "{self.name}"')
        return self

    async def drop(self) -> None:
        await _admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


async def drop_stale_databases() -> list[str]:
    """Databases left by a bench run that was killed (name prefix wfbench_). One that has a
    session is in use (another bench script running at the same time on this server) and is
    left alone."""
    conn = await asyncpg.connect(pg_url(PG_ADMIN_DB), timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database d WHERE datname LIKE 'wfbench\\_%'"
            " AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)"
        )
    finally:
        await conn.close(timeout=10)
    names = [r["datname"] for r in rows]
    for name in names:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return names


async def pg_version() -> str:
    conn = await asyncpg.connect(pg_url(PG_ADMIN_DB), timeout=10)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close(timeout=10)


# --- Redis ------------------------------------------------------------------------------------


class BenchRedis:
    """One logical Redis database of the shared server, used by the bench only.

    Our engine's queue names are fixed (`bull:workflow-*`), so the engine under test must not share
    a logical database with anyone else's engine: the bench takes database `db` (default 13), which
    must hold no key but the bench's own, and deletes only the keys matching BENCH_KEY_PATTERNS.
    Pub/sub channels are server-wide in Redis: the engine's event channel is shared with any other
    engine on this server (harmless for the figures, noted in RESULTS.md).
    """

    def __init__(self, db: int) -> None:
        self.db = db
        self.url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"

    def client(self) -> aioredis.Redis:
        return aioredis.from_url(self.url, socket_timeout=15, socket_connect_timeout=5)

    async def claim(self) -> None:
        client = self.client()
        try:
            size = await client.dbsize()
            if size and not await client.exists(MARKER_KEY):
                raise BenchError(
                    f"Redis database {self.db} holds {size} keys that are not the bench's; "
                    "choose another with --redis-db"
                )
            await self._delete(client)
            await client.set(MARKER_KEY, f"pid {os.getpid()}")
        finally:
            await client.aclose()

    async def clean(self, *, keep_marker: bool = True) -> int:
        client = self.client()
        try:
            return await self._delete(client, keep_marker=keep_marker)
        finally:
            await client.aclose()

    async def _delete(self, client: aioredis.Redis, *, keep_marker: bool = False) -> int:
        deleted = 0
        for pattern in BENCH_KEY_PATTERNS:
            batch: list[Any] = []
            async for key in client.scan_iter(match=pattern, count=1000):
                if keep_marker and key == MARKER_KEY.encode():
                    continue
                batch.append(key)
                if len(batch) >= 500:
                    deleted += await client.delete(*batch)
                    batch.clear()
            if batch:
                deleted += await client.delete(*batch)
        return deleted

    async def server_version(self) -> str:
        client = self.client()
        try:
            info = await client.info("server")
            return str(info.get("redis_version", "?"))
        finally:
            await client.aclose()


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
