"""The benchmark: our engine next to raw bullmq, Celery and DBOS, on this machine, in one run.

    .venv/bin/python bench/run.py            # full run (about 15 min), bench/RESULTS.md
    .venv/bin/python bench/run.py --quick    # smoke run, tiny counts, bench/RESULTS-quick.md
    .venv/bin/python bench/run.py --only throughput   # one figure, bench/RESULTS-throughput.md

Figures (--only NAME): throughput (also gives the per-step overhead), overhead, graphs (a
10-branch fan-out), map (a 1,000-item map), latency, rss, api, waits (10,000 executions parked
on events, then resumed: bench/waits.py's measurement), bullmq, celery, dbos. Every figure but
`waits` (one run) is the median of several repeats with its spread (min-max); every execution
counted is checked in the database (completed, with its step rows). The peers run
with bench/.venv-peers/bin/python (made here from bench/requirements-peers.txt), never from the
product's venv. A machine-readable copy of the figures goes to results*.json beside RESULTS*.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_bench import (
    Cluster,
    dispatch_latency_run,
    fan_out_doc,
    map_run,
    seed_rows,
    sequential_durations,
    throughput_run,
    time_get,
    worker_rss_run,
)
from harness import (
    BENCH,
    PEERS_PYTHON,
    PEERS_VENV,
    ROOT,
    BenchError,
    BenchRedis,
    PgDatabase,
    drop_stale_databases,
    percentile,
    pg_version,
)
from waits import Figures as WaitFigures
from waits import measure as measure_waits
from waits import waits_cluster

FIGURES = (
    "throughput",
    "overhead",
    "graphs",
    "map",
    "latency",
    "bullmq",
    "celery",
    "dbos",
    "api",
    "waits",
    "rss",
)
# The default (full) run, in this order: `rss` last, as its time cap is what is left of the budget.
DEFAULT_RUN = (
    "throughput",
    "graphs",
    "map",
    "latency",
    "bullmq",
    "celery",
    "dbos",
    "api",
    "waits",
    "rss",
)
GRAPH_CONFIGS = (("embedded-sqlite", 0, False), ("distributed-2w", 2, True))
FAN_OUT = 10  # branches of the `graphs` workflow: a first step, 10 branches, a join
MAP_PARALLELISM = 10  # the `map` figure's items at a time (the map's default is 5, its cap 100)
ENGINE_CONFIGS = (  # label, worker processes (0 = embedded), PostgreSQL
    ("embedded-sqlite", 0, False),
    ("distributed-1w", 1, True),
    ("distributed-2w", 2, True),
)


BUDGET_FULL_S = 20 * 60


@dataclass(frozen=True)
class Profile:
    name: str
    repeats: int
    target_s: float  # length of one measured throughput batch
    warmup_1: int
    warmup_10: int
    min_n: int
    max_n: int
    batch_deadline_s: float
    sequential: int  # executions one at a time, per workload and repeat (overhead per step)
    latency_rate: float
    latency_s: float
    latency_drain_s: float
    rss_target: int
    rss_mark: int
    rss_deadline_s: float
    api_rows: int
    api_gets: int
    map_items: int  # items of the `map` figure's one execution
    map_deadline_s: float
    waits_n: int  # executions parked on a `wait` step (`waits` figure)
    waits_batch: int  # 1-step executions per pace batch beside them
    waits_settle_s: float
    waits_park_limit_s: float
    waits_resume_limit_s: float
    budget_s: float  # the whole run; a figure that would start past it is skipped


FULL = Profile(
    name="full",
    repeats=3,
    target_s=4.0,
    warmup_1=100,
    warmup_10=30,
    min_n=50,
    max_n=20000,
    batch_deadline_s=45.0,
    sequential=10,
    latency_rate=200.0,
    latency_s=10.0,
    latency_drain_s=15.0,
    rss_target=20000,
    rss_mark=1000,
    rss_deadline_s=150.0,
    api_rows=1_000_000,
    api_gets=100,
    map_items=1000,
    map_deadline_s=120.0,
    waits_n=10_000,
    waits_batch=1000,
    waits_settle_s=15.0,
    waits_park_limit_s=480.0,
    waits_resume_limit_s=420.0,
    budget_s=BUDGET_FULL_S,
)
QUICK = Profile(
    name="quick",
    repeats=1,
    target_s=1.0,
    warmup_1=20,
    warmup_10=5,
    min_n=20,
    max_n=300,
    batch_deadline_s=20.0,
    sequential=3,
    latency_rate=200.0,
    latency_s=2.0,
    latency_drain_s=5.0,
    rss_target=400,
    rss_mark=100,
    rss_deadline_s=20.0,
    api_rows=20_000,
    api_gets=10,
    map_items=100,
    map_deadline_s=30.0,
    waits_n=200,
    waits_batch=100,
    waits_settle_s=1.0,
    waits_park_limit_s=60.0,
    waits_resume_limit_s=60.0,
    budget_s=5 * 60,
)


class Bench:
    def __init__(self, profile: Profile, args: argparse.Namespace) -> None:
        self.p = profile
        self.args = args
        self.redis = BenchRedis(args.redis_db)
        self.started = time.monotonic()
        self.results: dict[str, Any] = {"profile": profile.name, "figures": {}, "notes": []}

    @property
    def figures(self) -> dict[str, Any]:
        figures: dict[str, Any] = self.results["figures"]
        return figures

    def left_s(self) -> float:
        return self.p.budget_s - (time.monotonic() - self.started)

    def say(self, line: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[bench {elapsed:6.1f}s] {line}", flush=True)

    def note(self, line: str) -> None:
        self.say("NOTE " + line)
        self.results["notes"].append(line)

    # --- our engine: throughput and overhead per step ---

    def _n(self, warm_rate: float) -> int:
        return max(self.p.min_n, min(self.p.max_n, int(warm_rate * self.p.target_s)))

    async def engine_config(
        self, label: str, workers: int, pg: bool, *, tp: bool, oh: bool
    ) -> None:
        cluster = Cluster(
            label, workers, self.redis if workers else None, concurrency=self.args.concurrency
        )
        self.say(f"{label}: starting")
        await cluster.start(postgres=pg)
        try:
            for steps in (1, 10) if tp else ():
                warm_n = self.p.warmup_1 if steps == 1 else self.p.warmup_10
                runs = await self._batches(
                    cluster, f"{label} {steps}-step", f"{steps}", steps, warm_n
                )
                self.figures.setdefault("throughput", {})[f"{label}/{steps}"] = runs
            if oh:
                per_repeat = []
                for r in range(self.p.repeats):
                    d1 = await sequential_durations(
                        cluster, f"seq-1-{r}", 1, self.p.sequential, deadline_s=60
                    )
                    d10 = await sequential_durations(
                        cluster, f"seq-10-{r}", 10, self.p.sequential, deadline_s=60
                    )
                    m1, m10 = statistics.median(d1), statistics.median(d10)
                    per_repeat.append(
                        {
                            "n1": len(d1),
                            "n10": len(d10),
                            "median_1_ms": m1,
                            "median_10_ms": m10,
                            "per_step_ms": (m10 - m1) / 9,
                        }
                    )
                    self.say(
                        f"{label} overhead: 1-step {m1:.1f} ms, 10-step {m10:.1f} ms, "
                        f"per step {(m10 - m1) / 9:.2f} ms"
                    )
                self.figures.setdefault("overhead", {})[label] = per_repeat
            self.figures.setdefault("engine_rss_end_kib", {})[label] = {
                p.name: _rss(p.pid) for p in cluster.procs
            }
        finally:
            await cluster.stop()

    async def _batches(
        self,
        cluster: Cluster,
        what: str,
        tag: str,
        steps: int,
        warm_n: int,
        document: Any = None,
    ) -> list[dict[str, Any]]:
        """A warm-up batch, then `repeats` measured batches sized from its rate (`throughput_run`,
        each execution checked in the database: completed, its `steps` step rows completed).
        `document(name)` gives the workflow (default: `steps` no-op steps in a line)."""
        deadline = self.p.batch_deadline_s

        def doc(name: str) -> Any:
            return document(name) if document else None

        warm = await throughput_run(
            cluster, f"warm-{tag}", steps, warm_n, deadline_s=deadline, document=doc(f"warm-{tag}")
        )
        n = self._n(warm.rate)
        runs = []
        for r in range(self.p.repeats):
            name = f"tp-{tag}-{r}"
            run = await throughput_run(
                cluster, name, steps, n, deadline_s=deadline, document=doc(name)
            )
            self.say(
                f"{what}: {run.completed}/{run.requested} completed in "
                f"{run.seconds:.2f} s = {run.rate:.1f}/s"
                + (" (TIMED OUT)" if run.timed_out else "")
            )
            if run.not_completed:
                self.note(
                    f"{what} repeat {r}: {run.not_completed} executions not completed (not counted)"
                )
            runs.append({**asdict(run), "rate": run.rate})
        return runs

    async def throughput(self, *, tp: bool = True, oh: bool = True) -> None:
        for label, workers, pg in ENGINE_CONFIGS:
            await self.engine_config(label, workers, pg, tp=tp, oh=oh)

    # --- graphs: a 10-branch fan-out, a 1,000-item map ---

    async def graphs(self) -> None:
        """Executions/s of a first step, FAN_OUT parallel no-op branches and a join, as the 1- and
        10-step throughput figures are measured (each execution checked in the database)."""
        steps = FAN_OUT + 2
        figure: dict[str, Any] = {"branches": FAN_OUT, "steps": steps, "runs": {}}
        self.figures["graphs"] = figure
        for label, workers, pg in GRAPH_CONFIGS:
            cluster = Cluster(
                label, workers, self.redis if workers else None, concurrency=self.args.concurrency
            )
            self.say(f"{label}: starting")
            await cluster.start(postgres=pg)
            try:
                figure["runs"][label] = await self._batches(
                    cluster,
                    f"{label} fan-out {FAN_OUT}",
                    f"fan{FAN_OUT}",
                    steps,
                    self.p.warmup_10,
                    lambda name: fan_out_doc(name, FAN_OUT),
                )
            finally:
                await cluster.stop()

    async def map(self) -> None:
        """One execution at a time whose `map` step runs a no-op step over `map_items` items:
        created_at -> completed_at, `repeats` times after an unmeasured one of a tenth the size."""
        figure: dict[str, Any] = {
            "items": self.p.map_items,
            "parallelism": MAP_PARALLELISM,
            "runs": {},
        }
        self.figures["map"] = figure
        for label, workers, pg in GRAPH_CONFIGS:
            cluster = Cluster(
                label, workers, self.redis if workers else None, concurrency=self.args.concurrency
            )
            self.say(f"{label}: starting")
            await cluster.start(postgres=pg)
            try:
                self.say(f"{label}: started")
                warm = await map_run(
                    cluster,
                    "map-warm",
                    max(10, self.p.map_items // 10),
                    parallelism=MAP_PARALLELISM,
                    deadline_s=self.p.map_deadline_s,
                )
                self.say(
                    f"{label} warm-up map of {warm.items}: {warm.status} in {warm.seconds:.2f} s"
                )
                runs = figure["runs"][label] = []
                for r in range(self.p.repeats):
                    run = await map_run(
                        cluster,
                        f"map-{r}",
                        self.p.map_items,
                        parallelism=MAP_PARALLELISM,
                        deadline_s=self.p.map_deadline_s,
                    )
                    self.say(
                        f"{label} map of {run.items}: {run.status} in {run.seconds:.2f} s = "
                        f"{run.items_per_s:.0f} items/s, {run.step_rows_completed} step rows "
                        "completed" + (" (TIMED OUT)" if run.timed_out else "")
                    )
                    if not run.completed:
                        self.note(
                            f"{label} map repeat {r}: not completed with its {run.items + 1} "
                            f"step rows ({run.status}, {run.step_rows_completed} rows completed;"
                            " not counted)"
                        )
                    runs.append({**asdict(run), "items_per_s": run.items_per_s})
            finally:
                await cluster.stop()

    # --- durable waits (bench/waits.py's measure) ---

    async def waits(self) -> None:
        """bench/waits.py's run without its control and its one-hour delays: `waits_n`
        executions parked on a `wait` step beside the pace of other work, then resumed by
        POST /api/events, each checked to resume exactly once."""
        # Its time limits shrink with what is left of the budget (rss, after it, needs some).
        left = self.left_s()
        park_limit = min(self.p.waits_park_limit_s, max(60.0, 0.4 * left))
        resume_limit = min(self.p.waits_resume_limit_s, max(60.0, 0.3 * left))
        pace_limit = min(self.p.batch_deadline_s * 2, max(45.0, 0.05 * left))
        cluster = waits_cluster("distributed", self.redis)
        figures = WaitFigures("distributed", self.p.waits_n, 0, settle_s=self.p.waits_settle_s)
        await cluster.start(postgres=True)
        try:
            await measure_waits(
                cluster,
                figures,
                batch=self.p.waits_batch,
                warm=min(200, self.p.waits_batch),
                park_limit_s=park_limit,
                resume_limit_s=resume_limit,
                pace_limit_s=pace_limit,
                log=lambda line: self.say(f"waits: {line}"),
            )
        except TimeoutError as exc:
            raise BenchError("waits: a step ran past its time limit") from exc
        finally:
            await cluster.stop()
        self.figures["waits"] = {
            **asdict(figures),
            "resume_rate": figures.resume_rate,
            "batch": self.p.waits_batch,
        }
        if figures.resumed_once != figures.waiting:
            self.note(
                f"waits: {figures.waiting - figures.resumed_once} of {figures.waiting} "
                "executions did not resume exactly once"
            )

    # --- dispatch latency ---

    async def latency(self) -> None:
        runs = []
        for r in range(self.p.repeats):
            cluster = Cluster(f"latency-{r}", 2, self.redis, concurrency=self.args.concurrency)
            await cluster.start(postgres=True)
            try:
                run = await dispatch_latency_run(
                    cluster,
                    f"lat-{r}",
                    rate=self.p.latency_rate,
                    seconds=self.p.latency_s,
                    drain_s=self.p.latency_drain_s,
                )
            finally:
                await cluster.stop()
            self.say(
                f"latency repeat {r}: offered {run.offered_rate:.0f}/s, p50 "
                f"{'>=' if run.p50_censored else ''}{run.p50_ms:.1f} ms, p99 "
                f"{'>=' if run.p99_censored else ''}{run.p99_ms:.1f} ms, "
                f"{run.unstarted} of {run.offered} not started after the drain"
            )
            runs.append(asdict(run))
        self.figures["latency"] = {
            "mode": "distributed-2w",
            "rate": self.p.latency_rate,
            "seconds": self.p.latency_s,
            "runs": runs,
        }

    # --- worker memory ---

    async def rss(self) -> None:
        deadline = min(self.p.rss_deadline_s, max(20.0, self.left_s() - 30))
        cluster = Cluster("rss", 1, self.redis, concurrency=self.args.concurrency)
        await cluster.start(postgres=True)
        try:
            run = await worker_rss_run(
                cluster,
                target=self.p.rss_target,
                first_mark=self.p.rss_mark,
                deadline_s=deadline,
            )
        finally:
            await cluster.stop()
        self.say(
            f"rss: {run.reached} executions in {run.seconds:.0f} s; RSS at "
            f"{self.p.rss_mark}: {run.rss_at_1000_kib} KiB, at the end {run.rss_end_kib} KiB"
        )
        self.figures["rss"] = {**asdict(run), "mark": self.p.rss_mark, "deadline_s": deadline}

    # --- API at scale ---

    async def api(self) -> None:
        cluster = Cluster("api", 0, self.redis, concurrency=self.args.concurrency)
        await cluster.start(postgres=True)  # serve only (distributed mode: no workers)
        try:
            self.say(f"api: inserting {self.p.api_rows} execution rows")
            seeded = await seed_rows(cluster, self.p.api_rows)
            self.say(f"api: {seeded['rows']} rows in {seeded['insert_s']:.1f} s")
            limit = 50

            def page_ok(body: Any) -> None:
                if len(body["executions"]) != limit or not body["nextCursor"]:
                    raise BenchError(f"a page of {len(body['executions'])} rows, not {limit}")

            def detail_ok(body: Any) -> None:
                if len(body["steps"]) != 10 or len(body["logs"]) != 100:
                    raise BenchError(
                        f"detail has {len(body['steps'])} steps, {len(body['logs'])} logs"
                    )

            assert cluster.http is not None
            first = (await cluster.http.get(f"/api/executions?limit={limit}")).json()
            second = await cluster.http.get(
                f"/api/executions?limit={limit}&cursor={first['nextCursor']}"
            )
            if second.status_code != 200 or len(second.json()["executions"]) != limit:
                raise BenchError("following nextCursor failed")
            targets = {
                "list first page": f"/api/executions?limit={limit}",
                f"list deep page (row {seeded['deep_offset']:,})": (
                    f"/api/executions?limit={limit}&cursor={seeded['deep_cursor']}"
                ),
                "list status=failed first page": f"/api/executions?status=failed&limit={limit}",
                "GET one execution (10 steps, 100 logs)": f"/api/executions/{seeded['detail_id']}",
            }
            timings: dict[str, list[dict[str, float]]] = {}
            for name, path in targets.items():
                check = detail_ok if "GET one" in name else page_ok
                blocks = []
                for _ in range(self.p.repeats):
                    samples = await time_get(
                        cluster, path, self.p.api_gets, check=check, deadline_s=30
                    )
                    blocks.append(
                        {
                            "n": len(samples),
                            "p50": percentile(samples, 50),
                            "p99": percentile(samples, 99),
                            "max": max(samples),
                        }
                    )
                timings[name] = blocks
                self.say(
                    f"api {name}: p50 {blocks[-1]['p50']:.1f} ms, p99 {blocks[-1]['p99']:.1f} ms"
                )
            self.figures["api"] = {**seeded, "limit": limit, "timings": timings}
        finally:
            await cluster.stop()

    # --- peers ---

    def _peer(self, script: str, extra: list[str], timeout: float) -> dict[str, Any]:
        argv = [
            str(PEERS_PYTHON),
            script,
            "--redis-url",
            self.redis.url,
            "--repeats",
            str(self.p.repeats),
            "--target-s",
            str(self.p.target_s),
            "--warmup",
            str(self.p.warmup_1),
            "--min-n",
            str(self.p.min_n),
            "--max-n",
            str(self.p.max_n),
            "--deadline-s",
            str(self.p.batch_deadline_s),
            "--sequential",
            str(self.p.sequential * self.p.repeats),
            *extra,
        ]
        proc = subprocess.run(
            argv,
            cwd=BENCH / "peers",
            capture_output=True,
            text=True,
            timeout=timeout,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                result: dict[str, Any] = json.loads(line[len("RESULT ") :])
                return result
        raise BenchError(f"{script} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")

    async def bullmq(self) -> None:
        result = await asyncio.to_thread(self._peer, "peer_bullmq.py", [], 300)
        self.figures["bullmq"] = result
        self.say(f"bullmq: {[round(r['rate']) for r in result['runs']]} jobs/s")

    async def celery(self) -> None:
        result = await asyncio.to_thread(self._peer, "peer_celery.py", [], 400)
        self.figures["celery"] = result
        self.say(
            "celery: "
            + ", ".join(
                f"{k}-step {[round(r['rate']) for r in v]}/s"
                for k, v in result["throughput"].items()
            )
        )
        await self.redis.clean()

    async def dbos(self) -> None:
        database = await PgDatabase("dbos").create()
        try:
            result = await asyncio.to_thread(
                self._peer, "peer_dbos.py", ["--pg-url", database.url], 400
            )
        finally:
            await database.drop()
        self.figures["dbos"] = result
        self.say(
            "dbos: "
            + ", ".join(
                f"{k}-step {[round(r['rate']) for r in v]}/s"
                for k, v in result["throughput"].items()
            )
        )

    # --- the run ---

    async def run(self, only: str | None) -> None:
        await self.redis.claim()
        stale = await drop_stale_databases()
        if stale:
            self.note(f"dropped databases left by an interrupted bench run: {', '.join(stale)}")
        self.results["machine"] = await machine(self.redis)
        names = [only] if only else list(DEFAULT_RUN)
        try:
            for name in names:
                if self.left_s() < 30:
                    self.note(
                        f"{name}: skipped, the time budget of {self.p.budget_s:.0f} s is spent"
                    )
                    continue
                self.say(f"== {name}")
                try:
                    if name == "throughput":
                        await self.throughput(tp=True, oh=True)
                    elif name == "overhead":
                        await self.throughput(tp=False, oh=True)
                    else:
                        await getattr(self, name)()
                except (BenchError, subprocess.TimeoutExpired, OSError) as exc:
                    self.note(f"{name} FAILED: {str(exc)[:2000]}")
        finally:
            await self.redis.clean(keep_marker=False)
        self.results["elapsed_s"] = time.monotonic() - self.started


def _rss(pid: int) -> int | None:
    try:
        from harness import rss_kib

        return rss_kib(pid)
    except (OSError, BenchError):
        return None


def _local_facts() -> dict[str, Any]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])

    def peer_version(package: str) -> str:
        out = subprocess.run(
            [
                str(PEERS_PYTHON),
                "-c",
                f"import importlib.metadata as m; print(m.version({package!r}))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip() or "?"

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "_peer_version": peer_version,
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git": commit + (" + uncommitted changes in src/" if dirty else ""),
        "python": platform.python_version(),
        "workflow-engine": importlib.metadata.version("workflow-engine"),
        "bullmq (ours)": importlib.metadata.version("bullmq"),
    }


async def machine(redis: BenchRedis) -> dict[str, Any]:
    facts = await asyncio.to_thread(_local_facts)
    peer_version = facts.pop("_peer_version")
    for name in ("bullmq", "celery", "dbos"):
        key = "bullmq (peer)" if name == "bullmq" else name
        facts[key] = await asyncio.to_thread(peer_version, name)
    facts["postgresql"] = await pg_version()
    facts["redis"] = await redis.server_version()
    return facts


def ensure_peers_venv() -> None:
    """bench/.venv-peers from bench/requirements-peers.txt (re-made when the pins change)."""
    stamp = PEERS_VENV / ".installed"
    pins = BENCH / "requirements-peers.txt"
    if stamp.exists() and stamp.stat().st_mtime >= pins.stat().st_mtime:
        return
    print("[bench] installing the peers into bench/.venv-peers", flush=True)
    if not PEERS_PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True, timeout=300)
    uv = ROOT / ".venv" / "bin" / "uv"
    subprocess.run(
        [str(uv), "pip", "install", "--quiet", "--python", str(PEERS_PYTHON), "-r", str(pins)],
        check=True,
        timeout=600,
    )
    stamp.touch()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run with tiny counts")
    parser.add_argument("--only", choices=FIGURES, help="run one figure")
    parser.add_argument(
        "--redis-db",
        type=int,
        default=13,
        help="logical Redis database the bench may use (default 13)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=50,
        help="EXECUTION_CONCURRENCY of our engine's processes",
    )
    parser.add_argument("--out", type=Path, help="report path (default: see above)")
    parser.add_argument(
        "--report-from",
        type=Path,
        metavar="JSON",
        help="run nothing: write the report again from a results*.json (after editing "
        "report.py or PROFILE.md)",
    )
    args = parser.parse_args()
    if args.report_from is not None:
        from report import render

        results = json.loads(args.report_from.read_text())
        target = args.out or args.report_from.with_name(
            args.report_from.name.replace("results", "RESULTS").replace(".json", ".md")
        )
        target.write_text(render(results, command=results.get("command", "bench/run.py")))
        print(f"[bench] wrote {target}")
        return 0
    profile = QUICK if args.quick else FULL
    tag = "quick" if args.quick else (args.only or "")
    out = args.out or BENCH / (f"RESULTS-{tag}.md" if tag else "RESULTS.md")
    ensure_peers_venv()
    bench = Bench(profile, args)
    asyncio.run(asyncio.wait_for(bench.run(args.only), timeout=profile.budget_s + 240))
    from report import render

    bench.results["command"] = " ".join(["bench/run.py", *sys.argv[1:]])
    text = render(bench.results, command=bench.results["command"])
    out.write_text(text)
    out.with_name(out.name.replace("RESULTS", "results").replace(".md", ".json")).write_text(
        json.dumps(bench.results, indent=1, default=str)
    )
    print(text)
    print(f"[bench] wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
