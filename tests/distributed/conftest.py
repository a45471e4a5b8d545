"""Fixtures for the distributed mode: a fresh PostgreSQL database and a private Redis per test,
and `serve` + `workers` processes on them."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import Cluster
from tests.support.databases import fresh_database
from tests.support.servers import RedisServer

pytestmark = pytest.mark.distributed


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    with fresh_database("we_dist") as url:
        yield url


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
