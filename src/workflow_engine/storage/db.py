"""Database connections: URL normalisation, SQLite pragmas, read and write transactions, and
the translation of database errors into the engine's own (`errors.StorageError`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeAlias

from sqlalchemy import event, text
from sqlalchemy.engine import URL, RowMapping, make_url
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from workflow_engine import fastjson
from workflow_engine.errors import (
    ConfigurationError,
    DuplicateKey,
    RefusedValue,
    StorageError,
    StorageUnavailable,
)
from workflow_engine.storage import sqlite_inline

Connection: TypeAlias = AsyncConnection
"""What storage functions take: a connection from `Database.read`, `write` or `autocommit`."""
Row: TypeAlias = RowMapping
"""A row as storage functions return it: its values by column name."""


def async_url(raw: str) -> tuple[URL, dict[str, Any]]:
    """Turn a user's URL (`postgresql://...?schema=public`, `sqlite:///file`) into an async one.

    Returns the URL and the driver's connect arguments. Prisma-style `?schema=` becomes the
    PostgreSQL search_path, so the seed's `.env` works unchanged.
    """
    try:
        url = make_url(raw)
    except Exception as exc:
        raise ConfigurationError(f"DATABASE_URL is not a valid URL: {raw!r}") from exc
    backend = url.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend in ("postgresql", "postgres"):
        query = dict(url.query)
        schema = query.pop("schema", None)
        url = url.set(drivername="postgresql+asyncpg", query=query)
        # A statement that hangs (lost connection, partition) fails instead of stalling a worker
        # past its lease; the executor sends the write again or the lease moves on.
        connect_args["command_timeout"] = 60
        if schema:
            connect_args["server_settings"] = {"search_path": str(schema)}
        return url, connect_args
    if backend == "sqlite":
        url = url.set(drivername="sqlite+aiosqlite")
        if url.database and url.database != ":memory:":
            folder = Path(url.database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot create {str(folder)!r}, the folder of the SQLite database in "
                    f"DATABASE_URL/DATA_DIR: {exc.strerror or exc}"
                ) from exc
        connect_args["timeout"] = 30  # seconds sqlite3 waits for another writer's lock
        return url, connect_args
    raise ConfigurationError(
        f"unsupported database {backend!r} in DATABASE_URL: use postgresql:// or sqlite:///"
    )


INLINE_BUSY_TIMEOUT_MS = 1000


class Database:
    """An async engine plus the kinds of connection the engine uses: `write` (one transaction),
    `read`, and `autocommit` (statements that need no transaction together).

    On SQLite, write transactions start with BEGIN IMMEDIATE (a deferred transaction that later
    writes can fail at once with SQLITE_BUSY instead of waiting) and are serialised in-process.

    On PostgreSQL, `read` and `autocommit` run without BEGIN/COMMIT: each statement is its own
    transaction, which saves two round trips. Under READ COMMITTED (PostgreSQL's default) a
    transaction gives a series of reads no common snapshot anyway, so reads lose nothing.
    """

    def __init__(self, raw_url: str, *, pool_size: int = 10, sole_writer: bool = False) -> None:
        """`pool_size`: connections this process may hold at once (PostgreSQL). `sole_writer`:
        no other process writes the SQLite file (the embedded mode), so its statements may run
        inline on the event loop (storage/sqlite_inline.py): waiting for another writer's lock
        there would stall the loop."""
        url, connect_args = async_url(raw_url)
        self.url = url
        self.is_sqlite = url.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"connect_args": connect_args, "json_serializer": fastjson.dumps}
        if not self.is_sqlite:
            # No pre-ping: it costs three round trips per checkout; a dead connection raises and is
            # replaced, and the executor's writes are sent again (Executor._submit).
            kwargs.update(pool_size=pool_size, max_overflow=0, pool_timeout=60, pool_recycle=1800)
        if self.is_sqlite and sole_writer and url.database not in (None, "", ":memory:"):
            # Statements run inline on the event loop, not on aiosqlite's thread (see module).
            # Waiting for another process's lock blocks the loop, so not for long: past it the
            # write fails (the API answers 503, the executor tries again).
            kwargs["async_creator"] = sqlite_inline.creator(
                str(url.database), timeout_s=INLINE_BUSY_TIMEOUT_MS / 1000
            )
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        # Shares the pool; the isolation level is set on checkout (no round trip with asyncpg).
        self._autocommit_engine: AsyncEngine | None = (
            None if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine)

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    # Each kind of connection raises the engine's StorageError subclasses, not SQLAlchemy's or
    # a driver's errors (see `storage_error`); anything else the caller's block raises goes
    # through as it is.

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        with translated_errors():
            if self._autocommit_engine is not None:
                async with self._autocommit_engine.connect() as conn:
                    yield conn
                return
            async with self.engine.connect() as conn, conn.begin():
                yield conn

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """For statements each atomic on its own (an UPDATE ... RETURNING, a lone INSERT) whose
        caller needs no rollback of the earlier ones: committed one by one on PostgreSQL; on
        SQLite one write transaction (cheaper there than several)."""
        if self._autocommit_engine is None:
            async with self.write() as conn:
                yield conn
            return
        with translated_errors():
            async with self._autocommit_engine.connect() as conn:
                yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        with translated_errors():
            if self._write_lock is None:
                async with self.engine.begin() as conn:
                    yield conn
                return
            async with self._write_lock, self.engine.connect() as conn:
                await conn.execution_options(sqlite_immediate=True)
                async with conn.begin():
                    yield conn

    async def ping(self) -> None:
        """One round trip to the database; raises if it cannot be reached."""
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


# --- errors ---------------------------------------------------------------------------------------

UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")
"""PostgreSQL's connection exceptions, insufficient resources (too many connections, disk
full) and operator intervention (shutting down, statement timeout)."""
UNIQUE_VIOLATION = "23505"
SQLITE_UNIQUE = ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")


def storage_error(exc: BaseException) -> StorageError | None:
    """The engine's error for a database or driver error; None for any other exception.

    Lost or refused connections and timeouts are `StorageUnavailable`: a statement sent may or
    may not have been made, and trying again later may succeed. A unique violation is
    `DuplicateKey`. Every other error about a statement (a value or a row the database
    refused: a NUL character, a number out of range, another constraint) is `RefusedValue`:
    the statement was not made, and the same values would be refused again.
    """
    if isinstance(exc, StorageError) or not isinstance(exc, Exception):
        return None
    detail = exc.orig if isinstance(exc, DBAPIError) else exc
    if _unavailable(exc):
        return StorageUnavailable(_message(StorageUnavailable, detail))
    if isinstance(exc, IntegrityError) and _unique_violation(exc):
        return DuplicateKey(_message(DuplicateKey, detail))
    if isinstance(exc, StatementError):
        return RefusedValue(_message(RefusedValue, detail))
    return None


@contextmanager
def translated_errors() -> Iterator[None]:
    """Raise what `storage_error` makes of a database error from the block, from it."""
    try:
        yield
    except Exception as exc:
        error = storage_error(exc)
        if error is None:
            raise
        raise error from exc


def _unavailable(exc: Exception) -> bool:
    # OSError and TimeoutError: connecting failed (refused, unreachable), or asyncpg's
    # command_timeout ran out; neither is wrapped by SQLAlchemy. PoolTimeout: no connection
    # came free in time.
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout, OSError, TimeoutError)):
        return True
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or _sqlstate(exc)[:2] in UNAVAILABLE_SQLSTATE_CLASSES
    return False


def _unique_violation(exc: IntegrityError) -> bool:
    if _sqlstate(exc) == UNIQUE_VIOLATION:
        return True
    return getattr(exc.orig, "sqlite_errorname", None) in SQLITE_UNIQUE


def _sqlstate(exc: DBAPIError) -> str:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code if isinstance(code, str) else ""


def _message(kind: type[StorageError], detail: object) -> str:
    default = (kind.__doc__ or "").strip().rstrip(".")
    said = str(detail).strip()
    return f"{default}: {said}" if said else default


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see the "begin" hook).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
