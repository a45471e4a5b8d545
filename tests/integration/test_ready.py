"""`GET /api/ready` on a running engine (SQLite and PostgreSQL): open without a token like
`/api/health`, 200 while the database answers. (Redis and PostgreSQL outages: tests/distributed.)"""

from __future__ import annotations

from tests.conftest import StartEngine


async def test_ready_without_a_token_while_the_database_answers(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start_engine(db_url)
    no_token = {"Authorization": "Bearer not-the-token"}
    response = await running.client.get("/api/ready", headers=no_token)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "mode": "embedded", "checks": {"database": "ok"}}
    # Everything else under /api still needs the token.
    assert (await running.client.get("/api/queues", headers=no_token)).status_code == 401


async def test_ready_is_in_the_openapi_description(db_url: str, start_engine: StartEngine) -> None:
    running = await start_engine(db_url)
    paths = (await running.client.get("/openapi.json")).json()["paths"]
    assert "503" in paths["/api/ready"]["get"]["responses"]
