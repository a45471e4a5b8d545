"""Which `/api` paths skip the token check: `/api/health`, and Socket.io's own path
(`/api/socket`, `/api/socket/...`), which authenticates on connect. Nothing else, not even a
path that merely starts with `/api/socket` (issue 12, defect 6)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.realtime import live_server, socket_client

pytestmark = pytest.mark.timeout(60)

LOOKALIKES = ("/api/socketX", "/api/socket.io", "/api/sockets/1", "/api/socket-admin/x")


async def test_only_the_socket_path_itself_skips_the_token(db_url: str, tmp_path: Path) -> None:
    async with live_server(db_url, tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.url, trust_env=False) as anonymous:
            for path in LOOKALIKES:
                for method in ("GET", "POST", "DELETE"):
                    response = await anonymous.request(method, path)
                    assert response.status_code == 401, (method, path, response.text)
                    assert "token" in response.json()["detail"]
                # With the token the guard lets it through, and there is no such route.
                response = await server.client.get(path)
                assert response.status_code == 404, (path, response.text)
            assert (await anonymous.get("/api/health")).status_code == 200
            # Socket.io's own path is answered by Socket.io (the Engine.IO handshake), which
            # then refuses a connection without the token (test_realtime.py).
            handshake = await anonymous.get(
                "/api/socket/", params={"EIO": 4, "transport": "polling"}
            )
            assert handshake.status_code == 200 and handshake.text.startswith("0{")

        async with socket_client(server.url, auth={"token": server.token}) as client:
            ack = await client.call("subscribe_all")
            assert ack["ok"] is True, ack
