"""Retention under load: how fast a pass removes old executions, and what it costs the executions
running meanwhile. About 2 minutes here:

    .venv/bin/python bench/prune.py [--rows 20000] [--backends sqlite,postgres] [--no-write]

For each backend it starts the engine in-process, as `serve` runs it in the embedded mode
(SQLite in a temporary folder; PostgreSQL: a fresh database on 127.0.0.1:5432, no Redis), seeds
`rows` old finished executions with SQL (each with the step row, log lines and events a real
1-step execution has), and runs 1-step executions (`concurrency` in flight, each waited for
until `completed`) while a retention pass removes every seeded execution. The pass is let run
and held in turns (`--slice` seconds each), so the throughput with and without it is measured
in the same minutes. It prints the figures (rows removed per second, executions per second with
and without the pass) and writes them to `bench/PRUNE.md`, a section that `bench/RESULTS.md`
includes (spliced in now, and kept by `report.py` when RESULTS.md is written again).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import ROOT, PgDatabase

sys.path.insert(0, str(ROOT))  # tests.support.history: the same bulk insert as the tests

from sqlalchemy import text
from tests.support.history import insert_history

from workflow_engine.bootstrap import Engine, build
from workflow_engine.domain.definition import WorkflowDefinition
from workflow_engine.engine.retention import PruneReport, prune
from workflow_engine.settings import Settings

BENCH = Path(__file__).resolve().parent
SECTION = BENCH / "PRUNE.md"
RESULTS = BENCH / "RESULTS.md"
HEADING = "## Retention under load (bench/prune.py)"
WORKFLOW = WorkflowDefinition.model_validate(
    {"name": "prune-bench", "steps": [{"key": "s1", "type": "transform", "config": {"output": 1}}]}
)


@dataclass
class Figures:
    backend: str
    rows: int
    seed_s: float
    removed_executions: int
    removed_rows: int
    active_s: float
    """Time the pass was let run (its slices), pauses between its transactions included."""
    with_pass: list[float]
    without: list[float]
    per_execution: tuple[int, int, int]

    @property
    def rows_per_s(self) -> float:
        return self.removed_rows / self.active_s if self.active_s else 0.0

    @property
    def ratio(self) -> float:
        return statistics.median(self.with_pass) / statistics.median(self.without)


class Load:
    """1-step executions, `concurrency` in flight, each waited for (the engine's final event)."""

    def __init__(self, engine: Engine, concurrency: int) -> None:
        self.engine = engine
        self.concurrency = concurrency
        self.completed = 0
        self.failed = 0
        self._finals: dict[str, asyncio.Future[str]] = {}
        self._stop = asyncio.Event()
        self._unsubscribe = engine.bus.subscribe(self._on_event)

    async def _on_event(self, event: Any) -> None:
        if event.type in ("completed", "failed", "cancelled"):
            future = self._finals.setdefault(event.execution_id, asyncio.Future())
            if not future.done():
                future.set_result(event.type)

    async def _lane(self) -> None:
        while not self._stop.is_set():
            started = await self.engine.service.execute(WORKFLOW.name, {})
            future = self._finals.setdefault(started.execution_id, asyncio.Future())
            status = await asyncio.wait_for(future, 120)
            self._finals.pop(started.execution_id, None)
            if status == "completed":
                self.completed += 1
            else:
                self.failed += 1

    def start(self) -> None:
        self._stop.clear()
        self._lanes = [asyncio.create_task(self._lane()) for _ in range(self.concurrency)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._lanes)

    def close(self) -> None:
        self._unsubscribe()


class Gate:
    """Lets a retention pass run only while open: it asks `go_on` before each transaction."""

    def __init__(self) -> None:
        self.open = asyncio.Event()

    async def go_on(self) -> bool:
        await self.open.wait()
        return True


def prune_pass(
    engine: Engine, cutoff: datetime, pause_ratio: float | None
) -> tuple[Gate, Callable[[], Awaitable[PruneReport]]]:
    gate = Gate()
    return gate, lambda: prune(engine.db, cutoff, pause_ratio=pause_ratio, go_on=gate.go_on)


async def interleaved(
    load: Load,
    pass_: tuple[Gate, Callable[[], Awaitable[PruneReport]]],
    slice_s: float,
) -> tuple[list[float], list[float], float, PruneReport]:
    """The load's executions/s in alternating slices, with the pass running and without (it
    waits at its next transaction), until the pass is over: both measured in the same minutes,
    so the shared machine's drift weighs on both alike. Also the time the pass ran."""
    gate, run = pass_
    with_pass: list[float] = []
    without: list[float] = []
    active_s = 0.0
    load.start()
    await asyncio.sleep(1)
    task = asyncio.ensure_future(run())
    running = True
    try:
        while not task.done():
            if running:
                gate.open.set()
            else:
                gate.open.clear()
            done_before, started = load.completed, time.monotonic()
            await asyncio.wait({task}, timeout=slice_s)
            elapsed = time.monotonic() - started
            if running:
                active_s += elapsed
            if elapsed >= slice_s * 0.9:  # a whole slice (the last one may be cut short)
                rate = (load.completed - done_before) / elapsed
                (with_pass if running else without).append(rate)
            running = not running
    finally:
        gate.open.set()
        report = await task
        await load.stop()
    return with_pass, without, active_s, report


async def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    async with engine.db.read() as conn:
        return await conn.scalar(text(sql), params)


async def run_backend(
    backend: str, rows: int, concurrency: int, slice_s: float, pause_ratio: float | None
) -> Figures:
    with tempfile.TemporaryDirectory() as tmp:
        database: PgDatabase | None = None
        if backend == "postgres":
            database = await PgDatabase("prune").create()
            url = database.url
        else:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(data_dir=Path(tmp), database_url=url, _env_file=None)  # type: ignore[call-arg]
        engine = await build(settings)
        try:
            await engine.start_workers(concurrency=concurrency, say=lambda _: None)
            await engine.service.create_workflow(WORKFLOW)
            load = Load(engine, concurrency)
            load.start()  # warm up; and one real execution's rows
            await asyncio.sleep(2)
            await load.stop()
            sample = await scalar(engine, "SELECT id FROM executions LIMIT 1")
            counts = [
                int(
                    await scalar(
                        engine, f"SELECT count(*) FROM {t} WHERE execution_id = :i", i=sample
                    )
                )
                for t in ("execution_steps", "execution_logs", "execution_events")
            ]
            per_execution = (counts[0], counts[1], counts[2])
            assert per_execution[0] == 1, per_execution
            ids = await scalar(
                engine,
                "SELECT w.id || ' ' || w.active_version_id || ' ' || s.id FROM workflows w "
                "JOIN workflow_steps s ON s.workflow_version_id = w.active_version_id",
            )
            workflow_id, version_id, step_id = str(ids).split()
            started = time.monotonic()
            async with engine.db.write() as conn:
                await insert_history(
                    conn,
                    workflow_id=workflow_id,
                    version_id=version_id,
                    step_id=step_id,
                    count=rows,
                    finished_at=datetime.now(UTC) - timedelta(days=31),
                    logs=per_execution[1],
                    events=per_execution[2],
                )
            if backend == "postgres":
                async with engine.db.autocommit() as conn:
                    await conn.execute(text("ANALYZE"))
            seed_s = time.monotonic() - started
            cutoff = datetime.now(UTC) - timedelta(days=30)
            with_pass, without, active_s, report = await interleaved(
                load, prune_pass(engine, cutoff, pause_ratio), slice_s
            )
            left = await scalar(engine, "SELECT count(*) FROM executions WHERE id LIKE 'old-%'")
            assert int(left) == 0, left
            assert load.failed == 0, load.failed
            load.close()
            return Figures(
                backend=backend,
                rows=rows,
                seed_s=seed_s,
                removed_executions=report.removed.executions,
                removed_rows=report.removed.rows,
                active_s=active_s,
                with_pass=with_pass,
                without=without,
                per_execution=per_execution,
            )
        finally:
            await engine.stop(grace_s=1)
            if database is not None:
                await database.drop()


NAMES = {"sqlite": "embedded (SQLite)", "postgres": "PostgreSQL (engine in one process, no Redis)"}


def section(figures: list[Figures], concurrency: int, slice_s: float, seconds: float) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        HEADING,
        "",
        f"Made by `bench/prune.py` on {when} in {seconds:.0f} s, apart from the run above: on a "
        "**shared** 2-core machine (other tests ran meanwhile), so read the ratios "
        "more than the absolute figures.",
        "",
        "The engine runs in one process, as `serve` runs it in the embedded mode (the "
        "distributed mode's retention runs in one `workers` process the same way). Old finished "
        "executions are inserted with SQL, each with the rows a real 1-step execution has; one "
        "retention pass then removes all of them (500 per transaction, 100 on SQLite, paced as "
        "in the engine: after each transaction it waits 2 times as long as it took, 20 times on "
        "SQLite) while "
        f"1-step executions run, {concurrency} in flight, each waited for until `completed`. "
        f"The pass is let run and held in turns, {slice_s:g} s each, until it is over, and the "
        "executions completed per second are counted per slice: with the pass and without are "
        "so measured in the same minutes (median of the slices; min-max).",
        "",
        "| database | old executions (rows) | rows removed/s (while it ran) "
        "| 1-step executions/s without the pass | with the pass | with / without |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        steps, logs, events = f.per_execution
        out.append(
            f"| {NAMES[f.backend]} | {f.removed_executions:,} ({f.removed_rows:,}: {steps} step, "
            f"{logs} logs, {events} events each) | **{f.rows_per_s:,.0f}** | "
            f"{_figure(f.without)} | {_figure(f.with_pass)} | **{f.ratio:.0%}** |"
        )
    out += [
        "",
        "Every seeded execution was gone after the pass, and every execution run meanwhile "
        "completed. (Seeding took "
        + ", ".join(f"{f.seed_s:.0f} s on {f.backend}" for f in figures)
        + ".)",
        "",
    ]
    return "\n".join(out)


def _figure(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def splice(results: str, block: str) -> str:
    """RESULTS.md with its retention section replaced by `block`, or `block` put before the
    profile section (where report.py puts it)."""
    pattern = re.compile(re.escape(HEADING) + r".*?(?=\n## |\Z)", re.DOTALL)
    if pattern.search(results):
        return pattern.sub(lambda _: block.rstrip("\n") + "\n", results, count=1)
    marker = "## What limits the engine (profile)"
    if marker in results:
        return results.replace(marker, block + "\n" + marker, 1)
    return results.rstrip("\n") + "\n\n" + block


async def main(args: argparse.Namespace) -> None:
    started = time.monotonic()
    figures = []
    for backend in args.backends.split(","):
        print(f"[prune bench] {backend}: seeding {args.rows:,} old executions...", flush=True)
        fig = await run_backend(backend, args.rows, args.concurrency, args.slice, args.pause_ratio)
        print(
            f"[prune bench] {backend}: removed {fig.removed_executions:,} executions "
            f"({fig.removed_rows:,} rows) at {fig.rows_per_s:,.0f} rows/s; 1-step executions/s "
            f"without the pass {_figure(fig.without)}, with it {_figure(fig.with_pass)}",
            flush=True,
        )
        figures.append(fig)
    block = section(figures, args.concurrency, args.slice, time.monotonic() - started)
    print(block)
    if not args.no_write:
        SECTION.write_text(block)
        if RESULTS.exists():
            RESULTS.write_text(splice(RESULTS.read_text(), block))
        print(f"[prune bench] wrote {SECTION.name} and its section in {RESULTS.name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--slice", type=float, default=2.0, help="seconds per slice")
    parser.add_argument(
        "--pause-ratio", type=float, help="default: the engine's (engine/retention.py)"
    )
    parser.add_argument("--no-write", action="store_true")
    asyncio.run(main(parser.parse_args()))
