"""The API token, as a user meets it: given, missing, generated on first start and kept."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import TOKEN, StartServe

pytestmark = pytest.mark.e2e


def test_requests_need_the_token_but_health_does_not(start_serve: StartServe) -> None:
    serve = start_serve()
    with httpx.Client(base_url=serve.url, trust_env=False, timeout=10) as anonymous:
        for method, path in [
            ("GET", "/api/workflows"),
            ("GET", "/api/executions"),
            ("POST", "/api/workflows/x/execute"),
            ("GET", "/api/queues"),
        ]:
            response = anonymous.request(method, path, json={} if method == "POST" else None)
            assert response.status_code == 401, (path, response.text)
            assert response.headers["content-type"].startswith("application/json")
            assert "token" in response.json()["detail"]
            assert response.headers["www-authenticate"] == "Bearer"
        wrong = anonymous.get("/api/workflows", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.json()["detail"]
        health = anonymous.get("/api/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
    with serve.client() as client:
        assert client.get("/api/workflows").status_code == 200
    # API_TOKEN given: nothing generated, nothing printed.
    assert TOKEN not in serve.stdout()
    assert not (Path(serve.env["DATA_DIR"]) / "api-token").exists()


def test_without_api_token_one_is_generated_printed_saved_and_reused(
    start_serve: StartServe, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = start_serve({"API_TOKEN": None, "DATA_DIR": str(data)})
    match = re.search(r"Generated API token \(saved in (.+)\): (\S+)", first.stdout())
    assert match, first.stdout()
    token = match.group(2)
    saved = data / "api-token"
    assert Path(match.group(1)) == saved
    assert saved.read_text().strip() == token
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    with first.client(token) as client:
        assert client.get("/api/workflows").status_code == 200
    with first.client("not-" + token) as client:
        assert client.get("/api/workflows").status_code == 401
    assert first.terminate() == 0

    second = start_serve({"API_TOKEN": None, "DATA_DIR": str(data)})
    assert "Generated" not in second.stdout()
    assert token not in second.stdout()  # not printed again: it is in the file
    assert saved.read_text().strip() == token
    with second.client(token) as client:
        assert client.get("/api/workflows").status_code == 200
