"""The API answers a storage error with 503 and Retry-After, whatever kind it is."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from workflow_engine.api import errors
from workflow_engine.errors import DuplicateKey, RefusedValue, StorageError, StorageUnavailable


@pytest.mark.parametrize("kind", [StorageUnavailable, DuplicateKey, RefusedValue])
async def test_a_storage_error_is_a_503(kind: type[StorageError]) -> None:
    app = FastAPI()
    errors.install(app)

    @app.get("/fails")
    async def fails() -> None:
        raise kind()

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as client:
        response = await client.get("/fails")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {"detail": "the database is unavailable right now; try again shortly"}
