"""Durable waits at scale: many executions waiting cost no worker slot and no memory, and events
resume each exactly once. About 8 minutes here with the defaults:

    .venv/bin/python bench/waits.py [--waiting 10000] [--delays 1000] [--mode distributed|embedded]
                                    [--no-write]

It starts the engine as a user runs it (distributed: `serve` and one `workers` process with
concurrency 5 on a fresh PostgreSQL database and the bench's Redis database; embedded: `serve`
alone on SQLite), then:

1. runs a batch of 1-step executions (the usual pace) and reads the RSS of every process;
2. starts `--waiting` executions of a `wait` step (event `bench.go`, one key each) and `--delays`
   executions of a one-hour `delay`, and waits until all of them are `waiting`;
3. runs the same batch again while they wait (the pace with them waiting) and reads the RSS;
4. sends one `POST /api/events` per waiting execution and measures how fast they complete (the
   resume rate), then checks in the database that each resumed exactly once (one `resumed` event,
   the wait step completed with the event's data as its output) and that none is left waiting;
5. then, as a control, a fresh engine runs as many executions to completion (none waiting) and
   the same paces are measured: what the growth of the database alone costs.

Steps 1-4 are `measure`, which bench/run.py's `waits` figure (`make bench`) runs too, without the
delays and the control. This script prints the figures and writes them to `bench/WAITS.md`, a
section that `bench/RESULTS.md` includes (spliced in now, and kept by `report.py` when RESULTS.md
is written again).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from engine_bench import Cluster, throughput_run
from harness import BenchError, BenchRedis, rss_kib

BENCH = Path(__file__).resolve().parent
SECTION = BENCH / "WAITS.md"
RESULTS = BENCH / "RESULTS.md"
HEADING = "## Durable waits at scale (bench/waits.py)"
EVENT = "bench.go"
PARALLEL = 32


@dataclass
class Figures:
    mode: str
    waiting: int
    delays: int
    park_s: float = 0.0
    pace_before: float = 0.0
    pace_waiting_at_once: float = 0.0
    pace_waiting: float = 0.0
    settle_s: float = 0.0
    settled: str = ""
    control: tuple[float, float, float] | None = None
    """The same paces on a fresh engine where as many executions were run to completion
    instead of left waiting: what the database's growth alone costs."""
    rss_before: dict[str, int] = field(default_factory=dict)
    rss_waiting: dict[str, int] = field(default_factory=dict)
    rss_after: dict[str, int] = field(default_factory=dict)
    resume_s: float = 0.0
    resumed_once: int = 0
    resumed_twice: int = 0
    left_waiting: int = 0
    wrong_output: int = 0

    @property
    def resume_rate(self) -> float:
        return self.waiting / self.resume_s if self.resume_s else 0.0


def say(line: str) -> None:
    print(f"[waits bench] {line}", flush=True)


def rss(cluster: Cluster) -> dict[str, int]:
    return {proc.name: rss_kib(proc.pid) for proc in cluster.procs}


async def in_lanes(n: int, send: Any) -> None:
    """`send(i)` for i in 0..n-1, PARALLEL at a time."""
    queue = iter(range(n))

    async def lane() -> None:
        for i in queue:
            await send(i)

    await asyncio.gather(*(lane() for _ in range(min(PARALLEL, n))))


async def post(
    http: httpx.AsyncClient, url: str, body: dict[str, Any], *, key: str | None = None
) -> httpx.Response:
    """POST, sent again (up to 3 times) when the connection breaks before an answer: the
    server may close a kept-alive connection just as the client reuses it. An execute carries
    an Idempotency-Key, so a request that did arrive starts nothing twice; an event sent twice
    resumes nothing twice (the second meets no wait and is kept unmatched)."""
    headers = {"Idempotency-Key": key} if key else None
    for attempt in range(3):
        try:
            return await http.post(url, json=body, headers=headers)
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError):
            if attempt == 2:
                raise
            await asyncio.sleep(0.1)
    raise AssertionError("unreachable")


async def start_many(cluster: Cluster, workflow_id: str, n: int, key_base: int = 0) -> None:
    assert cluster.http is not None
    http = cluster.http

    async def send(i: int) -> None:
        response = await post(
            http,
            f"/api/workflows/{workflow_id}/execute",
            {"input": {"k": str(key_base + i)}},
            key=f"bench-wait-{workflow_id}-{key_base + i}",
        )
        if response.status_code != 202:
            raise BenchError(f"execute: {response.status_code} {response.text[:300]}")

    await in_lanes(n, send)


async def count(cluster: Cluster, workflow_id: str, status: str) -> int:
    assert cluster.probe is not None
    rows = await cluster.probe.fetch(
        "SELECT count(*) FROM executions WHERE workflow_id = $1 AND status = $2",
        workflow_id,
        status,
    )
    return int(rows[0][0])


async def until(cluster: Cluster, workflow_id: str, status: str, n: int, limit_s: float) -> float:
    """Seconds until `n` executions of the workflow have `status`."""
    started = time.monotonic()
    while (have := await count(cluster, workflow_id, status)) < n:
        if time.monotonic() - started > limit_s:
            raise BenchError(f"{have} of {n} executions {status} after {limit_s} s")
        await asyncio.sleep(0.25)
    return time.monotonic() - started


async def settle(cluster: Cluster, seconds: float) -> str:
    """Wait `seconds`; then, on a PostgreSQL whose autovacuum is off (this machine's), do what
    autovacuum would have done by then: VACUUM ANALYZE. Returns what was done, for the report."""
    await asyncio.sleep(seconds)
    if cluster.probe is None or cluster.database is None:
        return f"{seconds:.0f} s later"
    (row,) = await cluster.probe.fetch("SHOW autovacuum")
    if row[0] == "on":
        return f"{seconds:.0f} s later"
    conn = await asyncpg.connect(cluster.database.url, timeout=10)
    try:
        await conn.execute("VACUUM ANALYZE", timeout=300)
    finally:
        await conn.close(timeout=10)
    return f"{seconds:.0f} s later, then VACUUM ANALYZE (autovacuum is off here)"


async def pace(cluster: Cluster, name: str, n: int, limit_s: float = 120) -> float:
    run = await throughput_run(cluster, name, 1, n, deadline_s=limit_s)
    if run.completed != n:
        raise BenchError(f"{name}: {run.completed} of {n} completed")
    return run.rate


def waits_cluster(mode: str, redis: BenchRedis | None, label: str = "waits") -> Cluster:
    """The engine as a user runs it: distributed, `serve` and one `workers` process (needs
    `redis`) on PostgreSQL; embedded, `serve` alone on SQLite; concurrency 5 either way."""
    distributed = mode == "distributed"
    return Cluster(
        f"{label}-{mode}", 1 if distributed else 0, redis if distributed else None, concurrency=5
    )


WAITER_DOC: dict[str, Any] = {
    "name": "bench-wait",
    "steps": [
        {
            "key": "w",
            "type": "wait",
            "config": {"event": EVENT, "key": "{{ input.k }}", "timeoutMs": 86400000},
        }
    ],
}
SLEEPER_DOC: dict[str, Any] = {
    "name": "bench-delay",
    "steps": [{"key": "d", "type": "delay", "config": {"ms": 3600000}}],
}


async def measure(
    cluster: Cluster,
    figures: Figures,
    *,
    batch: int,
    warm: int = 200,
    park_limit_s: float = 600,
    resume_limit_s: float = 900,
    pace_limit_s: float = 120,
    log: Callable[[str], None] = say,
) -> Figures:
    """Steps 1-4 of the module's docstring on a started `cluster`, filling `figures` (whose
    `waiting`, `delays` and `settle_s` say what to do): the pace of `batch` 1-step executions
    before and while `figures.waiting` executions wait on an event (and `figures.delays` on a
    one-hour delay), then one event each, the resume rate, and the exactly-once check. Every wait
    is bounded (`*_limit_s`, BenchError past it). bench/run.py's `waits` figure runs this too."""
    await pace(cluster, "warm", warm, pace_limit_s)
    figures.pace_before = await pace(cluster, "pace-before", batch, pace_limit_s)
    figures.rss_before = rss(cluster)
    log(f"pace before: {figures.pace_before:.0f}/s, RSS {figures.rss_before} KiB")

    waiter = await cluster.create_document(WAITER_DOC)
    started = time.monotonic()
    await asyncio.wait_for(start_many(cluster, waiter, figures.waiting), timeout=park_limit_s)
    if figures.delays:
        sleeper = await cluster.create_document(SLEEPER_DOC)
        left = park_limit_s - (time.monotonic() - started)
        await asyncio.wait_for(start_many(cluster, sleeper, figures.delays), timeout=left)
    left = park_limit_s - (time.monotonic() - started)
    await until(cluster, waiter, "waiting", figures.waiting, limit_s=left)
    if figures.delays:
        left = park_limit_s - (time.monotonic() - started)
        await until(cluster, sleeper, "waiting", figures.delays, limit_s=left)
    figures.park_s = time.monotonic() - started
    log(f"{figures.waiting} + {figures.delays} executions waiting after {figures.park_s:.1f} s")

    # Starting 11,000 executions leaves 30,000 dead row versions in `executions` (each row
    # is updated as it runs): measured at once, and again once they are vacuumed (`settle`).
    figures.pace_waiting_at_once = await pace(cluster, "pace-at-once", batch, pace_limit_s)
    figures.settled = await settle(cluster, figures.settle_s)
    figures.pace_waiting = await pace(cluster, "pace-waiting", batch, pace_limit_s)
    figures.rss_waiting = rss(cluster)
    log(
        f"pace while they wait: {figures.pace_waiting_at_once:.0f}/s at once, "
        f"{figures.pace_waiting:.0f}/s {figures.settled}, RSS {figures.rss_waiting} KiB"
    )

    assert cluster.http is not None
    http = cluster.http

    async def send(i: int) -> None:
        response = await post(http, "/api/events", {"name": EVENT, "key": str(i), "data": {"n": i}})
        if response.status_code != 202:
            raise BenchError(f"event: {response.status_code} {response.text[:300]}")

    started = time.monotonic()
    await asyncio.wait_for(in_lanes(figures.waiting, send), timeout=resume_limit_s)
    left = resume_limit_s - (time.monotonic() - started)
    await until(cluster, waiter, "completed", figures.waiting, limit_s=left)
    figures.resume_s = time.monotonic() - started
    figures.rss_after = rss(cluster)
    log(
        f"{figures.waiting} resumed in {figures.resume_s:.1f} s = {figures.resume_rate:.0f}/s, "
        f"RSS {figures.rss_after} KiB"
    )
    await check(cluster, waiter, figures)
    log(
        f"resumed once: {figures.resumed_once}, twice or more: {figures.resumed_twice}, "
        f"left waiting: {figures.left_waiting}, wrong output: {figures.wrong_output}"
    )
    return figures


async def run_mode(args: argparse.Namespace) -> Figures:
    redis = BenchRedis(args.redis_db) if args.mode == "distributed" else None
    if redis is not None:
        await redis.claim()
    cluster = waits_cluster(args.mode, redis)
    figures = Figures(args.mode, args.waiting, args.delays, settle_s=args.settle)
    await cluster.start(postgres=redis is not None)
    try:
        say(f"{args.mode}: started ({', '.join(p.name for p in cluster.procs)})")
        return await measure(cluster, figures, batch=args.batch)
    finally:
        await cluster.stop()


async def run_control(args: argparse.Namespace) -> tuple[float, float, float]:
    """Before, just after and `--settle` s after as many 1-step executions as the waits were
    started and COMPLETED, on a fresh engine and database: the same steps, no waits."""
    redis = BenchRedis(args.redis_db) if args.mode == "distributed" else None
    if redis is not None:
        await redis.claim()
    cluster = waits_cluster(args.mode, redis, "waits-control")
    await cluster.start(postgres=redis is not None)
    try:
        await pace(cluster, "warm", 200)
        before = await pace(cluster, "pace-before", args.batch)
        filler = await cluster.create_document(
            {
                "name": "bench-filler",
                "steps": [{"key": "t", "type": "transform", "config": {"output": 1}}],
            },
        )
        count = args.waiting + args.delays
        await start_many(cluster, filler, count)
        await until(cluster, filler, "completed", count, limit_s=600)
        at_once = await pace(cluster, "pace-at-once", args.batch)
        await settle(cluster, args.settle)
        later = await pace(cluster, "pace-later", args.batch)
        say(
            f"control ({count} executions completed, none waiting): {before:.0f}/s before, "
            f"{at_once:.0f}/s at once, {later:.0f}/s {args.settle:.0f} s later"
        )
        return before, at_once, later
    finally:
        await cluster.stop()


async def check(cluster: Cluster, waiter: str, figures: Figures) -> None:
    assert cluster.probe is not None
    probe = cluster.probe
    resumed = await probe.fetch(
        "SELECT e.id, count(v.seq) FROM executions e LEFT JOIN execution_events v "
        "ON v.execution_id = e.id AND v.type = 'resumed' WHERE e.workflow_id = $1 GROUP BY e.id",
        waiter,
    )
    figures.resumed_once = sum(1 for _, n in resumed if n == 1)
    figures.resumed_twice = sum(1 for _, n in resumed if n > 1)
    figures.left_waiting = await count(cluster, waiter, "waiting")
    outputs = await probe.fetch(
        "SELECT e.input, s.output, s.status FROM executions e JOIN execution_steps s "
        "ON s.execution_id = e.id WHERE e.workflow_id = $1",
        waiter,
    )
    figures.wrong_output = sum(
        1
        for given, output, status in outputs
        if status != "completed" or not _matches(given, output)
    )


def _matches(given: Any, output: Any) -> bool:
    import json

    given = json.loads(given) if isinstance(given, str) else given
    output = json.loads(output) if isinstance(output, str) else output
    return isinstance(output, dict) and str(output.get("n")) == given["k"]


def section(figures: Figures) -> str:
    f = figures
    procs = sorted(f.rss_before)

    def mib(kib: int) -> str:
        return f"{kib / 1024:.0f}"

    rss_rows = "\n".join(
        f"| `{name}` | {mib(f.rss_before[name])} | {mib(f.rss_waiting[name])} | "
        f"{mib(f.rss_after[name])} |"
        for name in procs
    )
    verdict = (
        "every one resumed exactly once"
        if f.resumed_once == f.waiting and not (f.resumed_twice or f.left_waiting or f.wrong_output)
        else "NOT every one resumed exactly once"
    )
    control = f.control or (0.0, 0.0, 0.0)
    waiting_ratio = f.pace_waiting / f.pace_before if f.pace_before else 0.0
    control_ratio = control[2] / control[0] if control[0] else 0.0
    reading = (
        "within 10 points of each other: what slows other work comes with the growth of the "
        "database (the executions' rows), not with the waiting"
        if abs(waiting_ratio - control_ratio) <= 0.10
        else "the waiting executions cost other work more than the same growth of the "
        "database without them"
        if waiting_ratio < control_ratio
        else "the waiting executions cost other work less than running them to the end"
    )
    setup = (
        "`serve` and one `workers` process with concurrency 5, PostgreSQL and Redis"
        if f.mode == "distributed"
        else "`serve` alone, SQLite"
    )
    return f"""{HEADING}

Mode: {f.mode} ({setup}). {f.waiting:,} executions wait for an event (`wait` step, one key
each) and {f.delays:,} for a one-hour `delay`; all were `waiting`
{f.park_s:.0f} s after the first was started.

| | with {f.waiting + f.delays:,} waiting | control: as many completed instead |
|---|---|---|
| before | {f.pace_before:.0f} | {control[0]:.0f} |
| just after they were started | {f.pace_waiting_at_once:.0f} | {control[1]:.0f} |
| {f.settled} | {f.pace_waiting:.0f} | {control[2]:.0f} |

Executions/s of a batch of 1-step executions. Other work ran at {f.pace_waiting / f.pace_before:.0%}
of its pace before the waits; in the control, where the same number of executions ran to the
end and nothing waits, at {control[2] / control[0]:.0%}: {reading}.

RSS in MiB: waiting executions hold no memory in the engine's processes.

| process | before | {f.waiting + f.delays:,} waiting | after the resume |
|---|---|---|---|
{rss_rows}

Resume: {f.waiting:,} `POST /api/events` ({PARALLEL} in flight) resumed and completed them in
{f.resume_s:.1f} s: **{f.resume_rate:.0f} resumes/s**. Checked in the database: {verdict}
({f.resumed_once:,} with one `resumed` event, {f.resumed_twice} with more, {f.left_waiting}
left `waiting`, {f.wrong_output} whose step output is not its event's data).
"""


def splice(results: str, block: str) -> str:
    """RESULTS.md with its waits section replaced by `block`, or `block` added at the end."""
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(results):
        return pattern.sub(lambda _: block.rstrip() + "\n\n", results)
    return results.rstrip() + "\n\n" + block


async def main(args: argparse.Namespace) -> None:
    figures = await run_mode(args)
    figures.control = await run_control(args)
    block = section(figures)
    print(block)
    if not args.no_write:
        SECTION.write_text(block)
        if RESULTS.exists():
            RESULTS.write_text(splice(RESULTS.read_text(), block))
        say(f"wrote {SECTION.name} and its section in {RESULTS.name}")
    ok = figures.resumed_once == figures.waiting and not (
        figures.resumed_twice or figures.left_waiting or figures.wrong_output
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiting", type=int, default=10_000)
    parser.add_argument("--delays", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=1_000, help="1-step executions per pace")
    parser.add_argument("--mode", choices=["distributed", "embedded"], default="distributed")
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument("--settle", type=float, default=60.0, help="seconds before the pace")
    parser.add_argument("--no-write", action="store_true")
    asyncio.run(main(parser.parse_args()))
