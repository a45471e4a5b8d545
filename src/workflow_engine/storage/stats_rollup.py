"""The rollup of past buckets (`execution_rollups`): what the charts read instead of every
execution finished in them. Two sizes of bucket, one per chart window: minutes (the last hour)
and quarter hours (the last 24 hours).

A bucket is *settled* once it ended GRACE ago: by then every execution that finished in it has
been written (an execution's finish is stamped, then committed within milliseconds; GRACE leaves
room for a write sent again after a database hiccup). A settled bucket is counted once, by
`settle`, into one row per workflow plus one row "*" for every workflow together (whose presence
says the bucket is rolled up): the counts by final status, the exact p50/p95 of the durations,
and a histogram of them (domain/percentiles.py) that adds up over the window. The requests for
the charts settle what is missing (a few buckets per request, oldest first), so nothing runs when
nobody looks, and the executor's writes are untouched. Rows older than KEEP are deleted as new
ones come.

An execution committed more than GRACE after it finished, into a bucket already settled, is
missing from the charts' counts.
"""

from __future__ import annotations

import math
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.domain.percentiles import Histogram, percentile_cont
from workflow_engine.domain.status import FINAL_STATUSES
from workflow_engine.storage.tables import execution_rollups, executions

GRACE = timedelta(minutes=10)
KEEP = timedelta(hours=48)
ALL = "*"
"""The workflow_id of the row that counts every workflow (and marks the bucket settled)."""
FINAL = frozenset(status.value for status in FINAL_STATUSES)


def settled_until(width: timedelta, now: datetime) -> datetime:
    """The end of the last settled bucket of this width."""
    seconds = int(width.total_seconds())
    return datetime.fromtimestamp(math.floor((now - GRACE).timestamp()) // seconds * seconds, UTC)


async def rolled_up(
    conn: AsyncConnection, width: timedelta, start: datetime, end: datetime
) -> set[datetime]:
    """The buckets of this width in [start, end) that have their rows."""
    t = execution_rollups
    query = select(t.c.bucket_start).where(
        t.c.bucket_seconds == int(width.total_seconds()),
        t.c.bucket_start >= start,
        t.c.bucket_start < end,
        t.c.workflow_id == ALL,
    )
    return set((await conn.execute(query)).scalars())


async def unsettled(
    conn: AsyncConnection, width: timedelta, start: datetime, now: datetime
) -> list[datetime]:
    """The settled buckets from `start` (a bucket's start) without rows yet, oldest first."""
    until = settled_until(width, now)
    have = await rolled_up(conn, width, start, until)
    starts = []
    at = start
    while at + width <= until:
        if at not in have:
            starts.append(at)
        at += width
    return starts


async def settle(
    conn: AsyncConnection, width: timedelta, starts: list[datetime], now: datetime
) -> None:
    """Count these buckets (settled ones) into their rows, and delete rows older than KEEP.
    Idempotent: a bucket another process settled meanwhile is left as it is."""
    if conn.dialect.name == "postgresql":
        insert: Any = postgresql.insert(execution_rollups)
    else:
        insert = sqlite.insert(execution_rollups)
    insert = insert.on_conflict_do_nothing(
        index_elements=["bucket_start", "bucket_seconds", "workflow_id"]
    )
    for start in starts:
        if start + width > settled_until(width, now):
            raise ValueError(f"the bucket from {start} is not settled yet")
        rows = await conn.execute(
            select(executions.c.workflow_id, executions.c.status, executions.c.duration_ms).where(
                executions.c.completed_at >= start, executions.c.completed_at < start + width
            )
        )
        values = [
            _row(width, start, workflow, found, now) for workflow, found in _gather(rows).items()
        ]
        await conn.execute(insert, values)
    await conn.execute(
        delete(execution_rollups).where(execution_rollups.c.bucket_start < now - KEEP)
    )


@dataclass
class _Found:
    counts: dict[str, int]
    durations: list[float]


def _gather(rows: Any) -> dict[str, _Found]:
    """By workflow and for ALL: the counts by status and the durations."""
    found: dict[str, _Found] = defaultdict(lambda: _Found(dict.fromkeys(FINAL, 0), []))
    found[ALL]  # present even for an empty bucket: it marks the bucket settled
    for workflow, status, duration in rows:
        if status not in FINAL:
            continue
        for key in (workflow, ALL):
            found[key].counts[status] += 1
            if duration is not None:
                found[key].durations.append(float(duration))
    return found


def _row(
    width: timedelta, start: datetime, workflow: str, found: _Found, now: datetime
) -> dict[str, Any]:
    ordered = sorted(found.durations)
    return {
        "bucket_seconds": int(width.total_seconds()),
        "bucket_start": start,
        "workflow_id": workflow,
        **found.counts,
        "p50_ms": percentile_cont(ordered, 0.5),
        "p95_ms": percentile_cont(ordered, 0.95),
        "durations": Histogram.of(ordered).to_json(),
        "created_at": now,
    }


Counts = tuple[int, int, int]
"""(completed, failed, cancelled)."""


@dataclass(frozen=True)
class Bucket:
    counts: Counts
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class Summary:
    """The rollup of [start, until) for one scope (a workflow, or ALL): never changes, since a
    bucket's rows are written once."""

    buckets: dict[datetime, Bucket]
    durations: Histogram
    """Every bucket's together. Copy it before adding to it."""
    workflows: dict[str, Counts]
    """For ALL: the counts of each workflow over [start, until)."""


async def summarize(
    conn: AsyncConnection, width: timedelta, start: datetime, until: datetime, scope: str
) -> Summary:
    """The rows of [start, until) of `scope`, their histograms added up, and for ALL each
    workflow's counts (summed by the database)."""
    t = execution_rollups
    in_range = (
        t.c.bucket_seconds == int(width.total_seconds()),
        t.c.bucket_start >= start,
        t.c.bucket_start < until,
    )
    rows = await conn.execute(
        select(
            t.c.bucket_start,
            t.c.completed,
            t.c.failed,
            t.c.cancelled,
            t.c.p50_ms,
            t.c.p95_ms,
            t.c.durations,
        ).where(*in_range, t.c.workflow_id == scope)
    )
    buckets = {}
    durations = Histogram()
    for at, completed, failed, cancelled, p50, p95, histogram in rows:
        buckets[at] = Bucket((completed, failed, cancelled), p50, p95)
        durations.merge(Histogram.from_json(histogram))
    workflows: dict[str, Counts] = {}
    if scope == ALL:
        sums = await conn.execute(
            select(
                t.c.workflow_id,
                func.sum(t.c.completed),
                func.sum(t.c.failed),
                func.sum(t.c.cancelled),
            )
            .where(*in_range, t.c.workflow_id != ALL)
            .group_by(t.c.workflow_id)
        )
        workflows = {wf: (int(c), int(f), int(x)) for wf, c, f, x in sums}
    return Summary(buckets, durations, workflows)


class SummaryCache:
    """The last few summaries a process read, by (database, width, start, until, scope): the
    charts of many pages, refreshed as executions finish, read the same settled buckets again
    and again, and those never change."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[Any, ...], Summary] = OrderedDict()

    async def get(
        self,
        conn: AsyncConnection,
        width: timedelta,
        start: datetime,
        until: datetime,
        scope: str,
    ) -> Summary:
        key = (str(conn.engine.url), width, start, until, scope)
        found = self._entries.get(key)
        if found is None:
            found = await summarize(conn, width, start, until, scope)
            self._entries[key] = found
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return found
