"""Socket.io test helpers: the app on a real uvicorn server on a loopback port, and a
python-socketio client that records every event it receives."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import socketio
import uvicorn

from tests.support.process import free_port
from workflow_engine.app import create_app
from workflow_engine.bootstrap import Engine
from workflow_engine.settings import Settings

SOCKET_PATH = "/api/socket"
FINAL_EVENTS = {"completed", "failed", "cancelled"}


@dataclass
class LiveServer:
    url: str
    token: str
    engine: Engine
    client: httpx.AsyncClient


@contextlib.asynccontextmanager
async def live_server(
    database_url: str, data_dir: Path, *, token: str = "rt-token", **overrides: Any
) -> AsyncIterator[LiveServer]:
    """The whole app (API, Socket.io, workers) served by uvicorn in this event loop."""
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        http_allowlist=["127.0.0.1"],
        reconcile_interval_ms=1000,
        _env_file=None,  # type: ignore[call-arg]
        **overrides,
    )
    app = create_app(settings, token=token)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    task.result()
                    raise AssertionError("uvicorn stopped before it started")
                await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30, trust_env=False
        ) as client:
            yield LiveServer(url, token, app.state.engine, client)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@dataclass
class Recorder:
    """A connected socket.io client and every (event, payload) it received, in order."""

    sio: socketio.AsyncClient
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    batches: int = 0
    """`events` messages received (batch subscriptions); their items are in `events`."""

    def of(self, execution_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [(name, p) for name, p in self.events if p.get("executionId") == execution_id]

    def names(self, execution_id: str, *, logs: bool = False) -> list[str]:
        return [n for n, _ in self.of(execution_id) if logs or n != "log"]

    async def wait_for(self, predicate: Callable[[Recorder], bool], timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()

    async def wait_final(self, execution_id: str, timeout: float = 20) -> None:
        await self.wait_for(
            lambda r: any(n in FINAL_EVENTS for n in r.names(execution_id)), timeout
        )

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.sio.call(event, data, timeout=10)


@contextlib.asynccontextmanager
async def socket_client(
    url: str,
    *,
    auth: Any = None,
    headers: dict[str, str] | None = None,
    transports: list[str] | None = None,
) -> AsyncIterator[Recorder]:
    sio = socketio.AsyncClient(reconnection=False)
    recorder = Recorder(sio)

    async def on_any(event: str, data: Any = None) -> None:
        if event == "events" and isinstance(data, list):
            recorder.batches += 1
            recorder.events.extend((item["event"], item) for item in data)
        else:
            recorder.events.append((event, data if isinstance(data, dict) else {"data": data}))
        recorder.changed.set()

    sio.on("*", on_any)
    await sio.connect(
        url,
        socketio_path=SOCKET_PATH,
        auth=auth,
        headers=headers or {},
        transports=transports or ["websocket"],
        wait_timeout=10,
    )
    try:
        yield recorder
    finally:
        await sio.disconnect()
