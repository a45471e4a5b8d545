"""Aggregates of finished executions for the charts: per time bucket, the executions that ended
in it by final status and the p50/p95 of their durations; the same over the whole window; and
per workflow, the counts by status (hence the failure rate).

An execution counts in the bucket of its `completed_at`. The executions themselves are read in
two queries, each one pass over the window's entries of an index that holds every column they
read (`ix_executions_completed_at_...`, or `ix_executions_workflow_id_completed_at_...` for one
workflow), so the cost follows the executions finished in the window, not the table's size:
- the counts, grouped by (bucket, workflow, status): a few thousand groups at most;
- the percentiles of `duration_ms` per bucket and over the window: PostgreSQL's
  `percentile_cont`; on SQLite, which has none, a window function ranks the durations of each
  group and only the ranks the interpolation needs come back (`interpolate` then does what
  `percentile_cont` does: linear interpolation between the two closest ranks).

An hour or a day can hold hundreds of thousands of executions, so the settled buckets (ended
10 minutes ago) are read from their rollup (storage/stats_rollup.py: counts and exact per-bucket
percentiles, counted once) and only the buckets after them from the executions. The percentiles
over a whole window that was partly rolled up come from the rollup's histograms: within 1%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, cast, func, literal, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Subquery

from workflow_engine.domain.percentiles import Histogram, interpolate
from workflow_engine.domain.status import FINAL_STATUSES
from workflow_engine.storage import stats_rollup as rollup
from workflow_engine.storage.tables import executions

FINAL = frozenset(status.value for status in FINAL_STATUSES)
QUANTILES = (0.5, 0.95)


@dataclass(frozen=True)
class StatsWindow:
    """A period ending now, cut into equal buckets."""

    name: str
    span: timedelta
    bucket: timedelta

    @property
    def bucket_count(self) -> int:
        return int(self.span / self.bucket)

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        """(start, end): `end` is the end of the bucket `now` is in, so buckets start on whole
        minutes (or quarter hours) and the last one is the current one."""
        width = int(self.bucket.total_seconds())
        end_epoch = (math.floor(now.timestamp()) // width + 1) * width
        end = datetime.fromtimestamp(end_epoch, UTC)
        return end - self.span, end


WINDOWS = {
    "1h": StatsWindow("1h", timedelta(hours=1), timedelta(minutes=1)),
    "24h": StatsWindow("24h", timedelta(hours=24), timedelta(minutes=15)),
}


@dataclass
class Tally:
    """Finished executions of a bucket, a workflow or the window."""

    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None

    @property
    def finished(self) -> int:
        return self.completed + self.failed + self.cancelled

    @property
    def failure_rate(self) -> float | None:
        """Failed / finished (cancelled ones count as finished, not failed); None when none
        finished."""
        return self.failed / self.finished if self.finished else None

    def add(self, status: str, count: int) -> None:
        setattr(self, status, getattr(self, status) + count)


@dataclass
class ExecutionStats:
    window: StatsWindow
    start: datetime
    end: datetime
    buckets: list[tuple[datetime, Tally]]
    """Every bucket of the window in time order (empty ones too), by its start."""
    total: Tally = field(default_factory=Tally)
    workflows: dict[str, Tally] = field(default_factory=dict)
    """By workflow id: those with at least one execution finished in the window."""
    day_histogram: Histogram | None = None
    """The durations of the buckets read from the rollup, when some were."""


async def execution_stats(
    conn: AsyncConnection,
    window: StatsWindow,
    *,
    workflow_id: str | None = None,
    now: datetime | None = None,
    cache: rollup.SummaryCache | None = None,
) -> ExecutionStats:
    """The window's aggregates, of every workflow or of `workflow_id` only: the buckets already
    in the rollup from it (`stats_rollup.settle` puts them there), the rest from the
    executions; `cache` keeps what it read of the rollup."""
    start, end = window.bounds(now or datetime.now(UTC))
    stats = ExecutionStats(
        window,
        start,
        end,
        [(start + i * window.bucket, Tally()) for i in range(window.bucket_count)],
    )
    since = await _read_rollup(conn, stats, workflow_id, cache)
    await _read_executions(conn, stats, since, workflow_id)
    return stats


async def _read_rollup(
    conn: AsyncConnection,
    stats: ExecutionStats,
    workflow_id: str | None,
    cache: rollup.SummaryCache | None,
) -> datetime:
    """Fill the buckets the rollup has (up to the first it lacks) and the window's histogram;
    returns the start of the first bucket it lacks."""
    width = stats.window.bucket
    have = await rollup.rolled_up(conn, width, stats.start, stats.end)
    index = next((i for i, (at, _) in enumerate(stats.buckets) if at not in have), None)
    until = stats.end if index is None else stats.buckets[index][0]
    if until == stats.start:
        return until  # nothing rolled up yet: all from the executions (exact percentiles)
    scope = workflow_id or rollup.ALL
    if cache is None:
        summary = await rollup.summarize(conn, width, stats.start, until, scope)
    else:
        summary = await cache.get(conn, width, stats.start, until, scope)
    for at, tally in stats.buckets:
        found = summary.buckets.get(at)
        if found is not None:
            _add(tally, found.counts)
            _add(stats.total, found.counts)
            tally.p50_ms, tally.p95_ms = found.p50_ms, found.p95_ms
    if workflow_id is not None and stats.total.finished:
        _add(stats.workflows.setdefault(workflow_id, Tally()), _counts(stats.total))
    for workflow, counts in summary.workflows.items():
        _add(stats.workflows.setdefault(workflow, Tally()), counts)
    stats.day_histogram = Histogram(dict(summary.durations.bins))
    return until


def _add(tally: Tally, counts: tuple[int, int, int]) -> None:
    tally.completed += counts[0]
    tally.failed += counts[1]
    tally.cancelled += counts[2]


def _counts(tally: Tally) -> tuple[int, int, int]:
    return tally.completed, tally.failed, tally.cancelled


async def _read_executions(
    conn: AsyncConnection, stats: ExecutionStats, since: datetime, workflow_id: str | None
) -> None:
    """Add the executions finished from `since` to the end of the window."""
    dialect = conn.dialect.name
    width = int(stats.window.bucket.total_seconds())
    rows = _finished(dialect, stats.start, since, stats.end, width, workflow_id)

    counts = select(rows.c.bucket, rows.c.workflow_id, rows.c.status, func.count()).group_by(
        rows.c.bucket, rows.c.workflow_id, rows.c.status
    )
    for bucket, workflow, status, count in await conn.execute(counts):
        if status in FINAL and 0 <= bucket < len(stats.buckets):
            stats.buckets[bucket][1].add(status, count)
            stats.total.add(status, count)
            stats.workflows.setdefault(workflow, Tally()).add(status, count)

    histogram = stats.day_histogram
    percentiles = _pg_percentiles if dialect == "postgresql" else _ranked_percentiles
    found = await percentiles(conn, rows, whole=histogram is None)
    for bucket, (p50, p95) in found.items():
        if bucket is None:
            stats.total.p50_ms, stats.total.p95_ms = p50, p95
        elif 0 <= bucket < len(stats.buckets):
            tally = stats.buckets[bucket][1]
            tally.p50_ms, tally.p95_ms = p50, p95
    if histogram is not None:
        # The window's percentiles: the rollup's histograms plus the durations read here.
        query = select(rows.c.duration_ms).where(rows.c.duration_ms.is_not(None))
        for (duration,) in await conn.execute(query):
            histogram.add(float(duration))
        stats.total.p50_ms, stats.total.p95_ms = (histogram.quantile(q) for q in QUANTILES)


def _finished(
    dialect: str,
    start: datetime,
    since: datetime,
    end: datetime,
    width: int,
    workflow_id: str | None,
) -> Subquery:
    """The executions finished from `since` to `end`: bucket number (0 = the window's first,
    from `start`), workflow, status and duration; read from the index alone."""
    start_epoch = int(start.timestamp())
    bucket: ColumnElement[Any]
    if dialect == "postgresql":
        seconds: ColumnElement[Any] = func.date_part("epoch", executions.c.completed_at)
        bucket = cast(func.floor((seconds - float(start_epoch)) / float(width)), Integer)
    else:  # SQLite: whole seconds (the start is one), then integer division
        seconds = cast(func.strftime("%s", executions.c.completed_at), Integer)
        bucket = (seconds - start_epoch) // width
    # No condition on the status: an execution has a completed_at once it is final, and a
    # `status IN (...)` would tempt SQLite's planner into the (status, created_at) index, which
    # holds every finished execution of all time.
    conditions = [executions.c.completed_at >= since, executions.c.completed_at < end]
    if workflow_id is not None:
        conditions.append(executions.c.workflow_id == workflow_id)
    return (
        select(
            bucket.label("bucket"),
            executions.c.workflow_id,
            executions.c.status,
            executions.c.duration_ms,
        )
        .where(and_(*conditions))
        .subquery("finished")
    )


Percentiles = dict[int | None, tuple[float | None, float | None]]
"""(p50, p95) by bucket number; None: the whole window."""


async def _pg_percentiles(conn: AsyncConnection, rows: Subquery, *, whole: bool) -> Percentiles:
    """Per bucket, and over all the rows with `whole`."""
    p50, p95 = (func.percentile_cont(q).within_group(rows.c.duration_ms.asc()) for q in QUANTILES)
    query = (
        select(rows.c.bucket, p50, p95)
        .where(rows.c.duration_ms.is_not(None))
        .group_by(func.rollup(rows.c.bucket) if whole else rows.c.bucket)
    )
    # ROLLUP adds the whole's row, with a NULL bucket (no real row's is: completed_at is set).
    return {bucket: (_float(a), _float(b)) for bucket, a, b in await conn.execute(query)}


async def _ranked_percentiles(conn: AsyncConnection, rows: Subquery, *, whole: bool) -> Percentiles:
    """Without percentile_cont: rank the durations of each bucket (and of all the rows with
    `whole`), and read back only the ranks either side of each quantile's position."""
    durations = select(rows.c.bucket, rows.c.duration_ms).where(rows.c.duration_ms.is_not(None))
    d = durations.cte("durations")
    order = d.c.duration_ms.asc()
    per_bucket = select(
        d.c.bucket.label("grp"),
        d.c.duration_ms,
        (func.row_number().over(partition_by=d.c.bucket, order_by=order) - 1).label("i"),
        func.count().over(partition_by=d.c.bucket).label("n"),
    )
    overall = select(
        literal(-1).label("grp"),
        d.c.duration_ms,
        (func.row_number().over(order_by=order) - 1).label("i"),
        func.count().over().label("n"),
    )
    ranked = (union_all(per_bucket, overall) if whole else per_bucket).subquery("ranked")
    wanted = []
    for q in QUANTILES:
        low = cast(q * (ranked.c.n - 1), Integer)  # a cast truncates: floor, as n >= 1
        wanted += [ranked.c.i == low, ranked.c.i == low + 1]
    query = select(ranked.c.grp, ranked.c.i, ranked.c.n, ranked.c.duration_ms).where(or_(*wanted))
    values: dict[int, tuple[int, dict[int, float]]] = {}
    for grp, i, n, duration in await conn.execute(query):
        values.setdefault(grp, (n, {}))[1][i] = float(duration)
    found: Percentiles = {}
    for grp, (n, by_rank) in values.items():
        p50, p95 = (interpolate(by_rank, n, q) for q in QUANTILES)
        found[None if grp == -1 else grp] = (p50, p95)
    return found


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
