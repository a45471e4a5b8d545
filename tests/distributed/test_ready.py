"""`GET /api/ready` of a distributed `serve` follows its Redis and its PostgreSQL: 503 with the
reason within the probe's timeout while one is down, 200 again once it is back."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.distributed.conftest import MakeCluster
from tests.support.databases import admin_sql
from tests.support.servers import PostgresServer, RedisServer

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(120)]


def _ready(client: httpx.Client) -> httpx.Response:
    """One probe, timed: it must answer within the readiness timeout (2 s) plus a margin."""
    started = time.monotonic()
    response = client.get("/api/ready")
    assert time.monotonic() - started < 4, "readiness probe took too long"
    return response


def _wait_for(client: httpx.Client, status: int, timeout: float = 20) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = _ready(client)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_ready_follows_redis(
    fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    serve = make_cluster(fresh_pg, redis_server.url).start_serve()
    with httpx.Client(base_url=serve.url, timeout=10, trust_env=False) as anonymous:
        response = _ready(anonymous)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "status": "ready",
            "mode": "distributed",
            "checks": {"database": "ok", "redis": "ok"},
        }
        redis_server.stop()
        response = _ready(anonymous)
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["detail"].startswith("redis: "), body
        assert "database" not in body["detail"]
        assert body["checks"]["database"] == "ok"
        assert (anonymous.get("/api/health")).status_code == 200  # alive, just not ready
        redis_server.start()
        response = _wait_for(anonymous, 200)
        assert response.status_code == 200, response.text


def test_ready_follows_postgres(redis_server: RedisServer, make_cluster: MakeCluster) -> None:
    pg = PostgresServer().start()
    try:
        admin_sql('CREATE DATABASE "engine"', url=pg.url)
        url = pg.url.rsplit("/", 1)[0] + "/engine"
        serve = make_cluster(url, redis_server.url).start_serve()
        with httpx.Client(base_url=serve.url, timeout=10, trust_env=False) as anonymous:
            assert _ready(anonymous).status_code == 200
            pg.stop()
            response = _wait_for(anonymous, 503, timeout=10)
            assert response.status_code == 503, response.text
            assert response.json()["detail"].startswith("database: "), response.text
            pg.start()
            response = _wait_for(anonymous, 200)
            assert response.status_code == 200, response.text
            serve.stop()
    finally:
        pg.remove()
