"""Helpers shared by the integration tests: an engine whose client refuses 5xx, SQL, row counts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text, update

from tests.conftest import Running, StartEngine
from workflow_engine.domain.definition import WorkflowDefinition
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.tables import executions

TABLES = (
    "workflows",
    "workflow_versions",
    "workflow_steps",
    "triggers",
    "executions",
    "execution_steps",
    "execution_logs",
)


async def _no_server_error(response: httpx.Response) -> None:
    if response.status_code >= 500:
        await response.aread()
        raise AssertionError(
            f"{response.request.method} {response.request.url} answered "
            f"{response.status_code}: {response.text}"
        )


def refuse_5xx(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Make every response of `client` with a 5xx status fail the test at once."""
    client.event_hooks["response"].append(_no_server_error)
    return client


async def start(start_engine: StartEngine, db_url: str, **overrides: Any) -> Running:
    """`start_engine`, with a client on which any 5xx answer fails the test."""
    running = await start_engine(db_url, **overrides)
    refuse_5xx(running.client)
    return running


async def sql(running: Running, query: str, **params: Any) -> list[dict[str, Any]]:
    """Rows of a raw SQL query run through the engine's own database connection."""
    async with running.engine.db.read() as conn:
        result = await conn.execute(text(query), params)
        return [dict(row) for row in result.mappings()]


async def scalar(running: Running, query: str, **params: Any) -> Any:
    async with running.engine.db.read() as conn:
        return await conn.scalar(text(query), params)


async def counts(running: Running) -> dict[str, int]:
    """Rows in every table."""
    return {table: int(await scalar(running, f"SELECT count(*) FROM {table}")) for table in TABLES}


async def eventually(
    check: Callable[[], Any], *, timeout: float = 20, interval: float = 0.02
) -> Any:
    """Await `check()` until it returns something truthy; fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {value!r})")
        await asyncio.sleep(interval)


def parse_time(value: str) -> datetime:
    """An ISO timestamp from the API (`...Z`)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def insert_execution(
    running: Running, document: dict[str, Any], *, running_token: int | None = None
) -> tuple[str, str]:
    """A new workflow of `document` and one execution of it inserted directly (no queue job):
    `pending`, or `running` under `running_token`. Its id, and its version's id."""
    engine = running.engine
    workflow_id = await engine.service.create_workflow(WorkflowDefinition.model_validate(document))
    async with engine.db.write() as conn:
        version_id = (await wf_store.get_workflow(conn, workflow_id))["active_version_id"]
        execution_id = await ex_store.insert_execution(
            conn, ex_store.NewExecution(workflow_id, version_id, {})
        )
        if running_token is not None:
            await conn.execute(
                update(executions)
                .where(executions.c.id == execution_id)
                .values(status="running", fencing_token=running_token, started_at=datetime.now(UTC))
            )
    return execution_id, version_id
