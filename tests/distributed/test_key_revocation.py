"""Distributed mode: two `serve` replicas on one PostgreSQL and one Redis. A key revoked
through one replica (or by `workflow-engine keys revoke`) is dropped from the other's cache by
the revocation message, long before its API_KEY_CACHE_MS (a minute here) would run out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.support.realtime import live_server
from tests.support.servers import RedisServer
from workflow_engine import bootstrap
from workflow_engine.domain.access import CLI
from workflow_engine.settings import Settings
from workflow_engine.storage.db import Database


async def _refused_soon(client: httpx.AsyncClient, key: str) -> None:
    """Poll (bounded) until the replica refuses the key: the message takes a moment to arrive."""
    async with asyncio.timeout(10):
        while True:
            response = await client.get(
                "/api/workflows", headers={"Authorization": f"Bearer {key}"}
            )
            if response.status_code == 401:
                return
            assert response.status_code == 200, response.text
            await asyncio.sleep(0.05)


async def test_a_revocation_reaches_the_other_replicas(
    fresh_pg: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    shared = {"redis_url": redis_server.url, "api_key_cache_ms": 60_000}
    async with (
        live_server(fresh_pg, tmp_path / "a", token="admin", **shared) as first,
        live_server(fresh_pg, tmp_path / "b", token="admin", **shared) as second,
    ):
        keys = {}
        for name in ("by-api", "by-cli"):
            response = await first.client.post("/api/keys", json={"name": name, "role": "viewer"})
            assert response.status_code == 201, response.text
            keys[name] = response.json()["key"]
            # The second replica has it cached, for a minute.
            seen = await second.client.get(
                "/api/workflows", headers={"Authorization": f"Bearer {keys[name]}"}
            )
            assert seen.status_code == 200
        assert (await first.client.delete("/api/keys/by-api")).status_code == 200
        await _refused_soon(second.client, keys["by-api"])

        settings = Settings(database_url=fresh_pg, **shared, _env_file=None)  # type: ignore[arg-type]
        db = Database(fresh_pg)
        ring = bootstrap.key_ring(settings, db)  # what `workflow-engine keys revoke` uses
        try:
            await ring.revoke("by-cli", actor=CLI)
        finally:
            await ring.close()
            await db.dispose()
        await _refused_soon(first.client, keys["by-cli"])
        await _refused_soon(second.client, keys["by-cli"])
