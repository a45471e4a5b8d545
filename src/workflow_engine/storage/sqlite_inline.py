"""SQLite without a thread hop per call: an aiosqlite-shaped connection that runs each call
inline on the event loop, handed to SQLAlchemy's aiosqlite dialect as its `async_creator`.

aiosqlite runs every call on a helper thread, and SQLAlchemy's adapter makes about four calls
per statement (cursor, execute, fetch, close): each is a hand-over between threads and a wake-up
of the event loop, which cost more than the statement. In WAL mode with `synchronous=NORMAL`
(storage/db.py) a statement of ours takes tens of microseconds, so running it inline is cheaper
(bench: embedded 1-step executions/s about 1.4x).

It blocks the loop only while another PROCESS holds SQLite's write lock (the busy timeout): in
the embedded mode the engine is the database's only writer (the CLI goes through the HTTP API),
and this process's own writers are serialised by `Database`'s write lock before they get here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any


class _Cursor:
    """The part of aiosqlite's Cursor that SQLAlchemy's adapter uses."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> _Cursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> _Cursor:
        if parameters is None:
            self._cursor.execute(sql)
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> _Cursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _Inline:
    """Stands in for aiosqlite's request queue: the adapter puts (future, function) on it to
    set the isolation level; here the function runs at once."""

    @staticmethod
    def put_nowait(item: tuple[Any, Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:
            future.set_exception(exc)


class InlineConnection:
    """The part of aiosqlite's Connection that SQLAlchemy's adapter uses."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._connection: sqlite3.Connection | None = conn  # None once closed (as aiosqlite)
        self._tx = _Inline()

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._conn.isolation_level = value  # type: ignore[assignment]

    def cursor(self) -> _Cursor:
        return _Cursor(self._conn.cursor())

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()


def creator(path: str, *, timeout_s: float) -> Callable[[], Awaitable[InlineConnection]]:
    """SQLAlchemy's `async_creator` for the database file at `path`."""

    async def connect() -> InlineConnection:
        # Used from the event loop's thread only; SQLAlchemy's pool may close it elsewhere.
        return InlineConnection(sqlite3.connect(path, timeout=timeout_s, check_same_thread=False))

    return connect
