"""Shared fixtures: databases (SQLite and the machine's PostgreSQL), a running engine, a target."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.support.databases import fresh_database
from tests.support.target import Target, run_target
from workflow_engine.app import create_app
from workflow_engine.bootstrap import Engine
from workflow_engine.settings import Settings
from workflow_engine.storage.db import Database
from workflow_engine.storage.tables import metadata

TOKEN = "test-token"
FINAL = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped at the end), migrated."""
    with fresh_database("we_test", migrated=True) as url:
        yield url


async def _truncate(url: str) -> None:
    db = Database(url)
    try:
        async with db.write() as conn:
            names = ", ".join(t.name for t in metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {names} CASCADE"))
    finally:
        await db.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on a new SQLite file and on the (emptied) PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'engine.db'}"
    url: str = request.getfixturevalue("pg_database")
    await _truncate(url)
    return url


@pytest.fixture
def target() -> Iterator[Target]:
    with run_target() as server:
        yield server


@dataclass
class Running:
    """An engine with its app started, and an authenticated client on it."""

    engine: Engine
    client: httpx.AsyncClient

    async def create_workflow(self, document: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post("/api/workflows", json=document)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def execute(self, workflow: str, input: Any = None, **kwargs: Any) -> str:
        response = await self.client.post(
            f"/api/workflows/{workflow}/execute", json={"input": input or {}}, **kwargs
        )
        assert response.status_code == 202, response.text
        execution_id: str = response.json()["executionId"]
        return execution_id

    async def wait(
        self,
        execution_id: str,
        *,
        until: Callable[[dict[str, Any]], bool] = lambda e: e["status"] in FINAL,
        timeout: float = 20,
    ) -> dict[str, Any]:
        """Poll GET /api/executions/{id} until `until` holds; returns the last body."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            response = await self.client.get(f"/api/executions/{execution_id}")
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if until(body):
                return body
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting on execution: {body}")
            await asyncio.sleep(0.02)


StartEngine = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_engine(tmp_path: Path) -> AsyncIterator[StartEngine]:
    """`await start_engine(db_url, **settings)` -> Running; stopped at the end of the test."""
    stack: list[tuple[Any, Any]] = []

    async def start(database_url: str, **overrides: Any) -> Running:
        values: dict[str, Any] = {
            "data_dir": tmp_path / f"data{len(stack)}",
            "database_url": database_url,
            "http_allowlist": ["127.0.0.1"],
            "reconcile_interval_ms": 1000,
            "_env_file": None,
            **overrides,
        }
        settings = Settings(**values)
        app = create_app(settings, token=TOKEN)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://engine.test",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        stack.append((lifespan, client))
        return Running(app.state.engine, client)

    yield start
    for lifespan, client in reversed(stack):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)
