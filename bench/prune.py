"""Retention under load: how fast a pass removes old executions, and what it costs the executions
running meanwhile. About 2 minutes here:

    .venv/bin/python bench/prune.py [--rows 20000] [--backends sqlite,postgres] [--no-write]

For each backend it starts the engine in-process, as `serve` runs it in the embedded mode
(SQLite in a temporary folder; PostgreSQL: a fresh database on 127.0.0.1:5432, no Redis), seeds
`rows` old finished executions with SQL (each with the step row, log lines and events a real
1-step execution has), then measures the 1-step throughput (executions/s, `concurrency` in
flight, each waited for until `completed`) for a while without pruning, then during a retention
pass that removes every seeded execution (rows/s removed), then without pruning again. It prints
the figures and writes them to `bench/PRUNE.md`, a section that `bench/RESULTS.md` includes
(spliced in now, and kept by `report.py` when RESULTS.md is written again).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
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
from workflow_engine.engine.retention import prune
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
    prune_s: float
    before: float
    during: float
    after: float
    per_execution: tuple[int, int, int]

    @property
    def rows_per_s(self) -> float:
        return self.removed_rows / self.prune_s if self.prune_s else 0.0


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

    async def rate_while(self, work: Any) -> tuple[float, Any]:
        """Executions completed per second while `work` (an awaitable) runs; and its result."""
        self._stop.clear()
        lanes = [asyncio.create_task(self._lane()) for _ in range(self.concurrency)]
        done_before, started = self.completed, time.monotonic()
        try:
            result = await work
        finally:
            elapsed = time.monotonic() - started
            completed = self.completed - done_before
            self._stop.set()
            await asyncio.gather(*lanes)
        return completed / elapsed, result

    def close(self) -> None:
        self._unsubscribe()


async def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    async with engine.db.read() as conn:
        return await conn.scalar(text(sql), params)


async def run_backend(
    backend: str, rows: int, concurrency: int, window_s: float, pause_ratio: float | None
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
            await load.rate_while(asyncio.sleep(2))  # warm up; and one real execution's rows
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
            before, _ = await load.rate_while(asyncio.sleep(window_s))
            cutoff = datetime.now(UTC) - timedelta(days=30)
            during, report = await load.rate_while(
                prune(engine.db, cutoff, pause_ratio=pause_ratio)
            )
            after, _ = await load.rate_while(asyncio.sleep(window_s))
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
                prune_s=report.seconds,
                before=before,
                during=during,
                after=after,
                per_execution=per_execution,
            )
        finally:
            await engine.stop(grace_s=1)
            if database is not None:
                await database.drop()


NAMES = {"sqlite": "embedded (SQLite)", "postgres": "PostgreSQL (engine in one process, no Redis)"}


def section(figures: list[Figures], concurrency: int, seconds: float) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        HEADING,
        "",
        f"Made by `bench/prune.py` on {when} in {seconds:.0f} s, apart from the run above: on a "
        "**shared** 2-core machine (other engineers' tests ran meanwhile), so read the ratios "
        "more than the absolute figures.",
        "",
        "The engine runs in one process, as `serve` runs it in the embedded mode (the "
        "distributed mode's retention runs in one `workers` process the same way). Old finished "
        "executions are inserted with SQL, each with the rows a real 1-step execution has; one "
        "retention pass then removes all of them (500 per transaction, pacing as in the engine: "
        "after each transaction it waits 2 times as long as it took, 6 times on SQLite) while "
        f"1-step executions run, {concurrency} in flight, each waited for until `completed`. "
        "Throughput without pruning is measured before and after the pass.",
        "",
        "| database | old executions (rows) | pass | rows removed/s | executions/s removed "
        "| 1-step executions/s: before / during / after |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        steps, logs, events = f.per_execution
        out.append(
            f"| {NAMES[f.backend]} | {f.removed_executions:,} ({f.removed_rows:,}: {steps} step, "
            f"{logs} logs, {events} events each) | {f.prune_s:.1f} s | **{f.rows_per_s:,.0f}** | "
            f"{f.removed_executions / f.prune_s:,.0f} | {f.before:.0f} / **{f.during:.0f}** / "
            f"{f.after:.0f} ({f.during / ((f.before + f.after) / 2):.0%} of without) |"
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
        fig = await run_backend(backend, args.rows, args.concurrency, args.window, args.pause_ratio)
        print(
            f"[prune bench] {backend}: removed {fig.removed_executions:,} executions "
            f"({fig.removed_rows:,} rows) in {fig.prune_s:.1f} s = {fig.rows_per_s:,.0f} rows/s; "
            f"1-step executions/s before {fig.before:.0f}, during {fig.during:.0f}, "
            f"after {fig.after:.0f}",
            flush=True,
        )
        figures.append(fig)
    block = section(figures, args.concurrency, time.monotonic() - started)
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
    parser.add_argument("--window", type=float, default=6.0, help="seconds per measure")
    parser.add_argument(
        "--pause-ratio", type=float, help="default: the engine's (engine/retention.py)"
    )
    parser.add_argument("--no-write", action="store_true")
    asyncio.run(main(parser.parse_args()))
