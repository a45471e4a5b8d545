"""Aggregates of finished executions for the charts: per time bucket, the executions that ended
in it by final status and the p50/p95 of their durations; the same over the whole window; and
per workflow, the counts by status (hence the failure rate).

An execution counts in the bucket of its `completed_at`. Two queries, each one pass over the
rows of the window through an index that holds every column they read
(`ix_executions_completed_at_...`, or `ix_executions_workflow_id_completed_at_...` for one
workflow), so the cost follows the executions finished in the window, not the table's size:
- the counts, grouped by (bucket, workflow, status): a few thousand groups at most;
- the percentiles of `duration_ms` per bucket and over the window: PostgreSQL's
  `percentile_cont`; on SQLite, which has none, a window function ranks the durations of each
  group and only the ranks the interpolation needs come back (`_interpolate` then does what
  `percentile_cont` does: linear interpolation between the two closest ranks).
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

from workflow_engine.domain.status import FINAL_STATUSES
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


async def execution_stats(
    conn: AsyncConnection,
    window: StatsWindow,
    *,
    workflow_id: str | None = None,
    now: datetime | None = None,
) -> ExecutionStats:
    """The window's aggregates, of every workflow or of `workflow_id` only."""
    start, end = window.bounds(now or datetime.now(UTC))
    width = int(window.bucket.total_seconds())
    stats = ExecutionStats(
        window,
        start,
        end,
        [(start + i * window.bucket, Tally()) for i in range(window.bucket_count)],
    )
    dialect = conn.dialect.name
    rows = _finished(dialect, start, end, width, workflow_id)

    counts = select(rows.c.bucket, rows.c.workflow_id, rows.c.status, func.count()).group_by(
        rows.c.bucket, rows.c.workflow_id, rows.c.status
    )
    for bucket, workflow, status, count in await conn.execute(counts):
        if status in FINAL and 0 <= bucket < len(stats.buckets):
            stats.buckets[bucket][1].add(status, count)
            stats.total.add(status, count)
            stats.workflows.setdefault(workflow, Tally()).add(status, count)

    found = await (_pg_percentiles if dialect == "postgresql" else _ranked_percentiles)(conn, rows)
    for bucket, (p50, p95) in found.items():
        if bucket is None:
            stats.total.p50_ms, stats.total.p95_ms = p50, p95
        elif 0 <= bucket < len(stats.buckets):
            tally = stats.buckets[bucket][1]
            tally.p50_ms, tally.p95_ms = p50, p95
    return stats


def _finished(
    dialect: str, start: datetime, end: datetime, width: int, workflow_id: str | None
) -> Subquery:
    """The window's finished executions: bucket number (0 = the first), workflow, status and
    duration; read from the index alone."""
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
    conditions = [executions.c.completed_at >= start, executions.c.completed_at < end]
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


async def _pg_percentiles(conn: AsyncConnection, rows: Subquery) -> Percentiles:
    p50, p95 = (func.percentile_cont(q).within_group(rows.c.duration_ms.asc()) for q in QUANTILES)
    query = (
        select(rows.c.bucket, p50, p95)
        .where(rows.c.duration_ms.is_not(None))
        .group_by(func.rollup(rows.c.bucket))
    )
    # ROLLUP adds the window's row, with a NULL bucket (no real row's is: completed_at is set).
    return {bucket: (_float(a), _float(b)) for bucket, a, b in await conn.execute(query)}


async def _ranked_percentiles(conn: AsyncConnection, rows: Subquery) -> Percentiles:
    """Without percentile_cont: rank the durations of each bucket and of the window, and read
    back only the ranks either side of each quantile's position."""
    durations = select(rows.c.bucket, rows.c.duration_ms).where(rows.c.duration_ms.is_not(None))
    d = durations.cte("durations")
    order = d.c.duration_ms.asc()
    per_bucket = select(
        d.c.bucket.label("grp"),
        d.c.duration_ms,
        (func.row_number().over(partition_by=d.c.bucket, order_by=order) - 1).label("i"),
        func.count().over(partition_by=d.c.bucket).label("n"),
    )
    whole = select(
        literal(-1).label("grp"),
        d.c.duration_ms,
        (func.row_number().over(order_by=order) - 1).label("i"),
        func.count().over().label("n"),
    )
    ranked = union_all(per_bucket, whole).subquery("ranked")
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
        p50, p95 = (_interpolate(by_rank, n, q) for q in QUANTILES)
        found[None if grp == -1 else grp] = (p50, p95)
    return found


def _interpolate(by_rank: dict[int, float], n: int, q: float) -> float | None:
    """percentile_cont(q) of n sorted values, given those at the ranks (from 0) either side of
    position q * (n - 1)."""
    position = q * (n - 1)
    low = int(position)
    if low not in by_rank:
        return None
    if low + 1 >= n:
        return by_rank[low]
    return by_rank[low] + (by_rank[low + 1] - by_rank[low]) * (position - low)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
