"""Database errors leave storage/ as the engine's own: StorageUnavailable, DuplicateKey,
RefusedValue (each raised from the original), and everything else as it was."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from tests.support.process import free_port
from workflow_engine.domain.definition import WorkflowDefinition
from workflow_engine.errors import (
    DuplicateKey,
    NotFound,
    RefusedValue,
    StorageUnavailable,
)
from workflow_engine.ids import new_id
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import migrate
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.db import Database
from workflow_engine.storage.tables import workflows
from workflow_engine.storage.writer import ExecutionWriter, WriteOp

DOC = {"name": "w", "steps": [{"key": "a", "type": "transform", "config": {"output": 1}}]}


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await migrate.upgrade(database)
    yield database
    await database.dispose()


def workflow_row(workflow_id: str, name: str) -> dict[str, object]:
    now = datetime.now(UTC)
    return {"id": workflow_id, "name": name, "created_at": now, "updated_at": now}


async def test_a_unique_violation_is_a_duplicate_key(db: Database) -> None:
    workflow_id = new_id()
    async with db.write() as conn:
        await conn.execute(workflows.insert(), workflow_row(workflow_id, "one"))
    for block in (db.write, db.autocommit):
        with pytest.raises(DuplicateKey) as info:
            async with block() as conn:
                await conn.execute(workflows.insert(), workflow_row(workflow_id, "two"))
        assert isinstance(info.value.__cause__, IntegrityError)
        assert info.value.message.startswith("The database already holds a row with this key: ")


async def test_a_broken_foreign_key_is_a_refused_value(db: Database) -> None:
    with pytest.raises(RefusedValue):
        async with db.write() as conn:
            await ex_store.insert_execution(conn, ex_store.NewExecution("no-such", "none", {}))


async def test_values_postgresql_refuses_are_refused_values(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite stores these")
    for statement, value in (
        ("SELECT CAST(:v AS text)", "a\x00b"),
        ("SELECT CAST(:v AS jsonb)", '{"a": "\\u0000"}'),
        ("SELECT CAST(:v AS integer)", 2**40),
    ):
        with pytest.raises(RefusedValue) as info:
            async with db.read() as conn:
                await conn.execute(text(statement), {"v": value})
        assert isinstance(info.value.__cause__, SQLAlchemyError)


async def test_a_statement_past_its_timeout_is_unavailable(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL's statement_timeout")
    with pytest.raises(StorageUnavailable):
        async with db.write() as conn:
            await conn.execute(text("SET LOCAL statement_timeout = 50"))
            await conn.execute(text("SELECT pg_sleep(2)"))


async def test_a_database_that_cannot_be_reached_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-directory.db").mkdir()
    for url in (
        f"postgresql://127.0.0.1:{free_port()}/nothing",
        f"sqlite:///{tmp_path / 'a-directory.db'}",
    ):
        # sole_writer: SQLite inline (aiosqlite's thread outlives a failed connect, and the loop).
        database = Database(url, sole_writer=True)
        try:
            for block in (database.read, database.write, database.autocommit):
                with pytest.raises(StorageUnavailable):
                    async with block() as conn:
                        await conn.execute(text("SELECT 1"))
            with pytest.raises(StorageUnavailable):
                await database.ping()
        finally:
            await database.dispose()


async def test_errors_that_are_not_the_database_s_go_through_as_they_are(db: Database) -> None:
    with pytest.raises(NotFound):
        async with db.read() as conn:
            await wf_store.get_workflow(conn, "no-such-workflow")
    with pytest.raises(ValueError, match="ours"):
        async with db.write():
            raise ValueError("ours")
    with pytest.raises(asyncio.CancelledError):
        async with db.autocommit():
            raise asyncio.CancelledError


async def test_a_taken_idempotency_key_undoes_only_its_insert(db: Database) -> None:
    async with db.write() as conn:
        workflow_id = await wf_store.create_workflow(conn, WorkflowDefinition.model_validate(DOC))
        version_id = (await wf_store.get_workflow(conn, workflow_id))["active_version_id"]
    new = ex_store.NewExecution(workflow_id, version_id, {}, idempotency_key="k")
    async with db.write() as conn:
        first = await ex_store.insert_keyed_execution(conn, new)
        with pytest.raises(DuplicateKey):
            await ex_store.insert_keyed_execution(conn, new)
        # The transaction goes on: the first INSERT is still there and commits.
        assert (await ex_store.find_by_idempotency_key(conn, workflow_id, "k"))["id"] == first
    async with db.read() as conn:
        assert (await ex_store.get_execution(conn, first))["idempotency_key"] == "k"


async def test_a_write_the_database_refuses_is_a_duplicate_key(db: Database) -> None:
    async with db.write() as conn:
        workflow_id = await wf_store.create_workflow(conn, WorkflowDefinition.model_validate(DOC))
        version_id = (await wf_store.get_workflow(conn, workflow_id))["active_version_id"]
        execution_id = await ex_store.insert_execution(
            conn, ex_store.NewExecution(workflow_id, version_id, {})
        )
        await conn.execute(
            text("UPDATE executions SET status = 'running', fencing_token = 1 WHERE id = :id"),
            {"id": execution_id},
        )
    log = {
        "id": new_id(),
        "execution_id": execution_id,
        "level": "info",
        "message": "m",
        "metadata": None,
        "timestamp": datetime.now(UTC),
    }
    writer = ExecutionWriter(db, lease_ms=30_000)
    await writer.submit(WriteOp(execution_id, 1, logs=[log]))
    with pytest.raises(DuplicateKey):
        await writer.submit(WriteOp(execution_id, 1, logs=[log]))
