"""Run the Alembic migrations programmatically (`workflow-engine migrate`, `serve` at start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from workflow_engine.errors import ConfigurationError
from workflow_engine.storage.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK_KEY = 0x776F726B666C6F77  # "workflow": the advisory lock taken while migrating


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema up to `revision` (idempotent).

    Raises ConfigurationError, a one-line message for the user, if the database is unreachable.
    """
    try:
        conn = await db.engine.connect()
    except (OSError, DBAPIError) as exc:
        where = db.url.render_as_string(hide_password=True)
        reason = exc.orig if isinstance(exc, DBAPIError) else exc
        raise ConfigurationError(f"cannot connect to the database {where}: {reason}") from exc
    try:
        async with conn.begin():
            if conn.dialect.name == "postgresql":
                # serve and every workers process migrate at start: one at a time.
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            await conn.run_sync(lambda sync: command.upgrade(_config(sync), revision))
    finally:
        await conn.close()


async def revision(db: Database) -> str | None:
    """The schema's migration revision; None when the database has none of the engine's tables
    (never migrated). Raises StorageError when it cannot be reached."""

    def read(sync: Connection) -> str | None:
        return MigrationContext.configure(sync).get_current_revision()

    async with db.read() as conn:
        return await conn.run_sync(read)


async def downgrade(db: Database, revision: str) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(lambda sync: command.downgrade(_config(sync), revision))
