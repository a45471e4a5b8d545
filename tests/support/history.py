"""Old finished executions inserted in bulk with SQL (one set-based INSERT per table), the way an
engine that ran for months would hold them: for retention tests, not through 100,000 API calls."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

ID_DIGITS = 28


@dataclass(frozen=True)
class History:
    """What `insert_history` made: ids are `prefix` + a zero-padded number from 1 to `count`."""

    prefix: str
    count: int
    logs: int
    events: int

    def execution_id(self, n: int) -> str:
        return f"{self.prefix}{n:0{ID_DIGITS}d}"


def _julian_day(moment: datetime) -> float:
    return moment.timestamp() / 86400 + 2440587.5


async def insert_history(
    conn: AsyncConnection,
    *,
    workflow_id: str,
    version_id: str,
    step_id: str,
    count: int,
    finished_at: datetime,
    prefix: str = "old-",
    logs: int = 2,
    events: int = 3,
) -> History:
    """`count` finished executions (every tenth `failed`, the others `completed`), 1 ms apart,
    the last finishing at about `finished_at`, each with one step row, `logs` log lines and
    `events` events. Run it in a write transaction."""
    assert len(prefix) <= 36 - ID_DIGITS - 4 and logs <= 999  # a log id: l + 3 digits + id
    start = finished_at.astimezone(UTC)
    params = {
        "prefix": prefix,
        "n": count,
        "wf": workflow_id,
        "v": version_id,
        "step": step_id,
        "logs": logs,
        "events": events,
    }
    if conn.dialect.name == "postgresql":
        series = (
            "(SELECT g, CAST(:start AS timestamptz) - (:n - g) * interval '1 ms' AS ts, "
            "CAST(:prefix AS text) || lpad(g::text, 28, '0') AS eid "
            "FROM generate_series(1, CAST(:n AS int)) AS g) AS s"
        )
        params["start"] = start
        json = "::jsonb"
    else:
        series = (
            "(WITH RECURSIVE seq(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM seq WHERE g < :n) "
            "SELECT g, strftime('%Y-%m-%d %H:%M:%f', :start - (:n - g) / 86400000.0) || '000' "
            "AS ts, :prefix || printf('%028d', g) AS eid FROM seq) AS s"
        )
        params["start"] = _julian_day(start)
        json = ""
    pad3 = "printf('%03d', k.i)" if conn.dialect.name == "sqlite" else "lpad(k.i::text, 3, '0')"
    nums = (
        "(WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {limit}) "
        "SELECT i FROM k) AS k"
        if conn.dialect.name == "sqlite"
        else "generate_series(1, CAST({limit} AS int)) AS k(i)"
    )
    await conn.execute(
        text(
            "INSERT INTO executions (id, workflow_id, workflow_version_id, status, input, output,"
            " error, started_at, completed_at, duration_ms, retry_count, created_at, updated_at,"
            " fencing_token, handbacks) "
            "SELECT eid, :wf, :v, CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'completed' END, "
            f"'{{\"n\": 1}}'{json}, '{{\"ok\": true}}'{json}, "
            "CASE WHEN g % 10 = 0 THEN 'Step ''only'' failed: old' END, "
            f"ts, ts, 5, 0, ts, ts, 1, 0 FROM {series}"
        ),
        params,
    )
    await conn.execute(
        text(
            "INSERT INTO execution_steps (id, execution_id, step_id, step_key, position, status,"
            " input, output, started_at, completed_at, duration_ms, retry_count) "
            f"SELECT 's' || eid, eid, :step, 'only', 0, 'completed', 'null'{json}, "
            f"'{{\"ok\": true}}'{json}, ts, ts, 5, 0 FROM {series}"
        ),
        params,
    )
    if logs:
        await conn.execute(
            text(
                "INSERT INTO execution_logs (id, execution_id, level, message, metadata, "
                "timestamp) "
                f"SELECT 'l' || {pad3} || eid, "
                f"eid, 'info', 'old line', 'null'{json}, ts "
                f"FROM {series} CROSS JOIN {nums.format(limit=':logs')}"
            ),
            params,
        )
    if events:
        await conn.execute(
            text(
                "INSERT INTO execution_events (execution_id, seq, type, data, timestamp) "
                f"SELECT eid, k.i, 'log', '{{\"old\": true}}'{json}, ts "
                f"FROM {series} CROSS JOIN {nums.format(limit=':events')}"
            ),
            params,
        )
    return History(prefix, count, logs, events)
