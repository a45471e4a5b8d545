"""A batch of executor writes on SQLite (writer.py's flush there), sent as driver SQL.

Executing a SQLAlchemy statement (its compiled-cache lookup, the fence's expanding IN, every
bound value through its type) cost more than SQLite's own work on these writes. Here the same
statements are written out once, and each value is converted once into the form SQLAlchemy
stores it in, so the rows read back exactly as before (tests/integration/test_writer.py):
datetimes as naive UTC text (`YYYY-MM-DD HH:MM:SS.ffffff`), JSON as text, None as JSON `null`.
They still go through SQLAlchemy's connection (`exec_driver_sql`), inside the writer's
transaction, so a refused row raises the same errors (`storage.db.translated_errors`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import JSON, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine import fastjson
from workflow_engine.storage.tables import UTCDateTime, execution_steps

Convert = Callable[[Any], Any]


def stored_datetime(value: datetime | None) -> str | None:
    """`value` as SQLAlchemy stores a `UTCDateTime` on SQLite."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the database; use datetime.now(UTC)")
    v = value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    )


def read_datetime(value: str | None) -> datetime | None:
    """A stored `UTCDateTime` read back (as SQLAlchemy reads it: aware, in UTC)."""
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _stored_json(value: Any) -> str:
    return fastjson.dumps(value)


def _as_is(value: Any) -> Any:
    return value


@cache
def _converters(table: Table) -> dict[str, Convert]:
    found: dict[str, Convert] = {}
    for column in table.columns:
        if isinstance(column.type, UTCDateTime):
            found[column.name] = stored_datetime
        elif isinstance(column.type, JSON):
            found[column.name] = _stored_json
        else:
            found[column.name] = _as_is
    return found


def _names(columns: Iterable[str]) -> str:
    return ", ".join(f'"{column}"' for column in columns)


async def fence(
    conn: AsyncConnection,
    pairs: list[tuple[str, int]],
    *,
    now: datetime,
    lease_until: datetime,
    renew_before: datetime,
) -> dict[tuple[str, int], datetime | None]:
    """Renew the leases of the running executions whose (id, token) is in `pairs` (a lease
    ending before `renew_before` is renewed to `lease_until`); {(id, token):
    cancel_requested_at} of those."""
    rows: Any = await conn.exec_driver_sql(
        "UPDATE executions SET lease_expires_at = CASE WHEN lease_expires_at IS NULL OR "
        "lease_expires_at < ? THEN ? ELSE lease_expires_at END, updated_at = ? "
        "WHERE status = 'running' AND (id, fencing_token) IN "
        f"(VALUES {', '.join(['(?, ?)'] * len(pairs))}) "
        "RETURNING id, fencing_token, cancel_requested_at",
        (
            stored_datetime(renew_before),
            stored_datetime(lease_until),
            stored_datetime(now),
            *(value for pair in pairs for value in pair),
        ),
    )
    return {(str(r[0]), int(r[1])): read_datetime(r[2]) for r in rows}


async def insert(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT `rows`: one executemany per set of columns."""
    convert = _converters(table)
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        columns = tuple(row)
        groups[columns].append(tuple(convert[column](row[column]) for column in columns))
    for columns, values in groups.items():
        await conn.exec_driver_sql(
            f"INSERT INTO {table.name} ({_names(columns)}) "
            f"VALUES ({', '.join(['?'] * len(columns))})",
            values,
        )


async def update_steps(
    conn: AsyncConnection, updates: list[tuple[str, str, dict[str, Any]]]
) -> None:
    """UPDATE step rows: (execution_id, step_key, {column: value}); one executemany per set
    of columns."""
    convert = _converters(execution_steps)
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = defaultdict(list)
    for execution_id, step_key, values in updates:
        columns = tuple(values)
        converted = (convert[column](values[column]) for column in columns)
        groups[columns].append((*converted, execution_id, step_key))
    for columns, params in groups.items():
        assignments = ", ".join(f'"{column}" = ?' for column in columns)
        await conn.exec_driver_sql(
            f"UPDATE execution_steps SET {assignments} WHERE execution_id = ? AND step_key = ?",
            params,
        )


async def finish(conn: AsyncConnection, rows: list[tuple[str, int, dict[str, Any]]]) -> None:
    """The final status of executions: (id, token, `Finish.columns()`)."""
    if not rows:
        return
    await conn.exec_driver_sql(
        "UPDATE executions SET status = ?, output = ?, error = ?, completed_at = ?, "
        "duration_ms = ?, retry_count = retry_count + ?, lease_owner = NULL, "
        "lease_expires_at = NULL WHERE id = ? AND fencing_token = ?",
        [
            (
                values["status"],
                _stored_json(values["output"]),
                values["error"],
                stored_datetime(values["completed_at"]),
                values["duration_ms"],
                values["retries"],
                execution_id,
                token,
            )
            for execution_id, token, values in rows
        ],
    )
