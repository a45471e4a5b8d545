"""Fixtures for the distributed mode: a fresh PostgreSQL database and a private Redis per test,
and `serve` + `workers` processes on them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.support.cluster import Cluster
from tests.support.servers import RedisServer
from tests.support.services import PG_ADMIN_DB, PG_HOST, PG_PORT, require
from workflow_engine.storage.db import Database

pytestmark = pytest.mark.distributed


def admin_sql(url: str, sql: str) -> None:
    async def run() -> None:
        db = Database(url)
        try:
            async with db.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(sql))
        finally:
            await db.dispose()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result(timeout=60)


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    require("PostgreSQL", PG_HOST, PG_PORT)
    name = f"we_dist_{uuid.uuid4().hex[:10]}"
    admin = f"postgresql://{PG_HOST}:{PG_PORT}/{PG_ADMIN_DB}"
    admin_sql(admin, f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{PG_HOST}:{PG_PORT}/{name}"
    finally:
        admin_sql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


MakeCluster = Callable[..., Cluster]


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeCluster]:
    made: list[Cluster] = []
    request.node.clusters = made

    def make(database_url: str, redis_url: str, **env: str) -> Cluster:
        cluster = Cluster(tmp_path, database_url=database_url, redis_url=redis_url, env=dict(env))
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[Any]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        for n, cluster in enumerate(getattr(item, "clusters", [])):
            report.sections.append((f"cluster{n} output", cluster.logs()))
