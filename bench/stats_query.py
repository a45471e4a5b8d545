"""How long the charts' aggregate (`GET /api/stats`, storage/stats.py and stats_rollup.py) takes
with 1,000,000 executions in the table, on PostgreSQL:

    .venv/bin/python bench/stats_query.py [--rows 1000000] [--runs 15] [--write]

It makes a scratch database on the PostgreSQL of 127.0.0.1:5432 (dropped at the end), migrates
it, and inserts `rows` finished executions of 10 workflows with one INSERT ... SELECT over
generate_series (90% completed, 8% failed, 2% cancelled; durations 5 ms to 5 s): a fifth of them
finished in the last 24 hours (about 140 a minute, a busy engine) and the rest over the 29 days
before (about 19 a minute). Then it rolls up the hour and the day (as the first requests
would) and times
what a request reads (SQLAlchemy and asyncpg, as the API), for the last hour and day, of every
workflow (/monitoring) and of one (a workflow's page): as of 7 days ago (typical) and now (busy).
Each figure is the median (and min-max) of `runs` runs after two warm-up runs. A few minutes.

With `--write` the table also goes to `bench/STATS.md`, which `bench/RESULTS.md` includes (as it
includes PROFILE.md) the next time the report is written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from harness import PgDatabase, pg_version

from workflow_engine.domain.definition import WorkflowDefinition
from workflow_engine.storage import migrate, stats_rollup
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.db import Database
from workflow_engine.storage.stats import WINDOWS, execution_stats

WORKFLOWS = 10
RECENT_SHARE = 0.2
"""Of the rows, the share that finished in the last 24 hours; the rest spread over 29 days."""
OUT = Path(__file__).with_name("STATS.md")
TARGET_MS = 50.0
NOTE = (
    "A request reads the rollup (a row per settled bucket, and every workflow's sums; once per "
    "new bucket per process) and the executions finished since the last settled bucket (10 to "
    "11 minutes of them for the hour, 10 to 25 for the day: an index-only scan of their entries "
    "and a sort for the percentiles), so its cost follows neither the table's size nor the "
    "window's executions. The percentiles over a whole window come from the rollup's "
    "histograms (within 1%); each bucket's are exact."
)


async def load(db: Database, url: str, rows: int, now: datetime) -> tuple[list[str], float]:
    """The workflows' ids, and the seconds the INSERT (and VACUUM ANALYZE) took."""
    ids = []
    async with db.write() as conn:
        for n in range(WORKFLOWS):
            document = {
                "name": f"stats-{n}",
                "steps": [{"key": "a", "type": "transform", "config": {"output": 1}}],
            }
            ids.append(
                await wf_store.create_workflow(conn, WorkflowDefinition.model_validate(document))
            )
    conn = await asyncpg.connect(url, timeout=10)
    try:
        versions = [
            await conn.fetchval("SELECT active_version_id FROM workflows WHERE id = $1", i)
            for i in ids
        ]
        recent = int(rows * RECENT_SHARE)
        started = time.monotonic()
        # Row g finished `ago` before now: the first `recent` rows within the last day, the
        # others over the 29 days before. Statuses and durations vary with g.
        await conn.execute(
            """
            INSERT INTO executions (id, workflow_id, workflow_version_id, status, input,
                started_at, completed_at, duration_ms, retry_count, created_at, updated_at,
                fencing_token)
            SELECT md5('wfstats' || g)::uuid::text, ($2::text[])[g % 10 + 1],
                   ($3::text[])[g % 10 + 1],
                   CASE WHEN g % 50 = 7 THEN 'cancelled'
                        WHEN g % 25 IN (3, 11) THEN 'failed' ELSE 'completed' END,
                   '{}'::jsonb, done - dur, done, (extract(epoch FROM dur) * 1000)::bigint, 0,
                   done - dur, done, 1
            FROM (SELECT g,
                         $1::timestamptz - CASE WHEN g <= $5::int THEN g * $6::interval
                             ELSE interval '1 day' + (g - $5::int) * $7::interval
                         END AS done,
                         (5 + (g::bigint * 7919) % 4995) * interval '1 ms' AS dur
                  FROM generate_series(1, $4::int) AS g) AS s
            """,
            now,
            ids,
            versions,
            rows,
            recent,
            timedelta(days=1) / recent,
            timedelta(days=29) / (rows - recent),
            timeout=900,
        )
        await conn.execute("VACUUM ANALYZE executions", timeout=600)
        return ids, time.monotonic() - started
    finally:
        await conn.close()


async def settle(db: Database, now: datetime) -> tuple[float, int]:
    """Roll up the hour and the day before `now` as the API's requests do, all at once:
    seconds, and how many buckets."""
    started = time.monotonic()
    done = 0
    for period in WINDOWS.values():
        start, _ = period.bounds(now)
        async with db.read() as conn:
            todo = await stats_rollup.unsettled(conn, period.bucket, start, now)
        async with db.write() as conn:
            await stats_rollup.settle(conn, period.bucket, todo, now)
        done += len(todo)
    return time.monotonic() - started, done


async def timed(
    db: Database,
    window: str,
    workflow_id: str | None,
    now: datetime,
    runs: int,
    cache: stats_rollup.SummaryCache | None,
) -> tuple[list[float], int]:
    """Milliseconds per request's reads (the look for buckets to roll up, none here, then the
    aggregate), and how many executions the window held."""
    period = WINDOWS[window]
    times = []
    finished = 0
    for n in range(runs + 2):
        started = time.perf_counter()
        async with db.read() as conn:
            start, _ = period.bounds(now)
            assert not await stats_rollup.unsettled(conn, period.bucket, start, now)
            stats = await execution_stats(
                conn, period, workflow_id=workflow_id, now=now, cache=cache
            )
        if n >= 2:  # two warm-up runs
            times.append((time.perf_counter() - started) * 1000)
        finished = stats.total.finished
    return times, finished


async def main(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()[0]
    scratch = await PgDatabase("stats").create()
    db = Database(scratch.url, pool_size=2)
    try:
        await migrate.upgrade(db)
        now = datetime.now(UTC)
        ids, load_s = await load(db, scratch.url, args.rows, now)
        print(f"{args.rows:,} executions inserted and VACUUM ANALYZEd in {load_s:.0f} s")
        lines = []
        settles = []
        # As of 7 days ago first: rolling up the day before now deletes the older rollup rows.
        for label, at in (
            ("typical: as of 7 days ago", now - timedelta(days=7)),
            ("busy: now", now),
        ):
            seconds, quarters = await settle(db, at)
            settles.append(f"{label.split(':')[0]}: {quarters} buckets in {seconds:.1f} s")
            print(f"{label}: rolled up {quarters} buckets in {seconds:.1f} s", flush=True)
            for window in ("1h", "24h"):
                for scope, workflow_id in (("every workflow", None), ("one workflow", ids[3])):
                    cache = stats_rollup.SummaryCache()
                    times, finished = await timed(db, window, workflow_id, at, args.runs, cache)
                    median = statistics.median(times)
                    verdict = "met" if median < TARGET_MS else "**not met**"
                    uncached, _ = await timed(db, window, workflow_id, at, args.runs, None)
                    cold = f"{statistics.median(uncached):.1f}"
                    line = (
                        f"| {label} | {window} | {scope} | {finished:,} | "
                        f"**{median:.1f}** ({min(times):.1f}-{max(times):.1f}) | {verdict} | "
                        f"{cold} |"
                    )
                    print(line, flush=True)
                    lines.append(line)
    finally:
        await db.dispose()
        await scratch.drop()
    load_after = os.getloadavg()[0]
    header = [
        "## Charts' aggregate at 1,000,000 rows (PostgreSQL)",
        "",
        f"Made by `bench/stats_query.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, PostgreSQL "
        f"{await pg_version()}, on this machine (2 cores shared with the database). "
        f"{args.rows:,} finished executions of {WORKFLOWS} workflows in the table ("
        f"{RECENT_SHARE:.0%} of them in the last 24 hours, about "
        f"{args.rows * RECENT_SHARE / 1440:.0f} a minute; the rest over the 29 days before, "
        f"about {args.rows * (1 - RECENT_SHARE) / 29 / 1440:.0f} a minute), inserted with SQL in "
        f"{load_s:.0f} s and `VACUUM ANALYZE`d. Timed from Python: what a `GET /api/stats` "
        "reads (SQLAlchemy and asyncpg, as the API): the look for buckets to roll up, then "
        "`storage.stats.execution_stats` (the rollup's rows of the settled buckets, then the "
        "executions finished since). `ms`: as a `serve` process answers between two settled "
        "buckets (what it read of the rollup kept in memory: settled buckets never change); the "
        "last column: without that cache, as the first request after a bucket settles. Median "
        f"(min-max) of {args.runs} runs after two warm-ups, once the minutes and quarter hours "
        f"were rolled up ({'; '.join(settles)}: what the first requests after a start do, 8 "
        f"buckets each). Load average (1 min) at the start and the end: {load_before:.1f} and "
        f"{load_after:.1f} (other work shared the machine).",
        "",
        f"| as of | window | workflows | executions in the window | ms | < {TARGET_MS:.0f} ms "
        "| ms, rollup not cached |",
        "|---|---|---|---|---|---|---|",
    ]
    if args.write:
        OUT.write_text("\n".join([*header, *lines, "", NOTE, ""]))
        print(f"written to {OUT}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--write", action="store_true", help="also write bench/STATS.md")
    asyncio.run(main(parser.parse_args()))
