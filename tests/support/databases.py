"""PostgreSQL databases of the tests' own on the machine's server: created, used, dropped."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import text

from tests.support.services import PG_ADMIN_DB, PG_HOST, PG_PORT, require
from workflow_engine.storage import migrate
from workflow_engine.storage.db import Database

T = TypeVar("T")
SERVER = f"postgresql://{PG_HOST}:{PG_PORT}"


def run_sync(coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
    """Run a coroutine to its end from synchronous code, even inside a running event loop
    (fixtures are sometimes first asked for there): in a thread of its own."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=timeout)


def admin_sql(sql: str, *, url: str = f"{SERVER}/{PG_ADMIN_DB}") -> None:
    """One statement outside a transaction (CREATE/DROP DATABASE)."""

    async def run() -> None:
        db = Database(url)
        try:
            async with db.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(sql))
        finally:
            await db.dispose()

    run_sync(run())


@contextmanager
def fresh_database(prefix: str, *, migrated: bool = False) -> Iterator[str]:
    """A new database on the machine's PostgreSQL (empty, or `migrated`), dropped afterwards."""
    require("PostgreSQL", PG_HOST, PG_PORT)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    url = f"{SERVER}/{name}"
    admin_sql(f'CREATE DATABASE "{name}"')
    try:
        if migrated:

            async def upgrade() -> None:
                db = Database(url)
                try:
                    await migrate.upgrade(db)
                finally:
                    await db.dispose()

            run_sync(upgrade())
        yield url
    finally:
        admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
