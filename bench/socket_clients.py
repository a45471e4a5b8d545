"""Bench: socket.io clients following /monitoring while executions run (not part of `make test`).

Runs the same load twice on a fresh `workflow-engine serve` (embedded mode) each time:
  A. N executions, no socket client;
  B. the same N executions with C socket.io clients in `subscribe_all` (what /monitoring does).
Prints the engine's throughput in both runs (executions per second, from the first `created_at`
to the last `completed_at` in the database, so client lag does not count) and whether every
client received every `completed` event. Bounded: it gives up after --deadline seconds.

    .venv/bin/python bench/socket_clients.py [--executions 500] [--clients 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import socketio
from sqlalchemy import text

from workflow_engine.storage.db import Database

TOKEN = "bench-token"
STEPS = bool(os.environ.get("BENCH_STEPS"))
"""BENCH_STEPS=1: the clients also ask for step events (3x the messages)."""
CLI = str(Path(sys.executable).parent / "workflow-engine")
WORKFLOW = {
    "name": "bench",
    "steps": [
        {"key": "a", "type": "transform", "config": {"output": {"n": "{{ input.n }}"}}},
        {"key": "b", "type": "transform", "config": {"output": {"x": "{{ steps.a.output.n }}"}}},
    ],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_serve(workdir: Path, concurrency: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "DATA_DIR": str(workdir),
        "API_TOKEN": TOKEN,
        "PORT": str(port),
        "EXECUTION_CONCURRENCY": str(concurrency),
    }
    log = (workdir / "serve.log").open("wb")
    proc = subprocess.Popen([CLI, "serve"], cwd=workdir, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("serve did not start; see " + str(workdir / "serve.log"))


async def connect_clients(url: str, count: int, expected: set[str]) -> list[dict[str, Any]]:
    states: list[dict[str, Any]] = []

    async def one() -> None:
        sio = socketio.AsyncClient(reconnection=False)
        state: dict[str, Any] = {"sio": sio, "completed": set(), "events": 0}

        async def on_batch(items: list[dict[str, Any]]) -> None:
            # As the /monitoring page does: events arrive in batches every 100 ms.
            for item in items:
                state["events"] += 1
                if item["event"] == "completed":
                    state["completed"].add(item["executionId"])

        sio.on("events", on_batch)
        await sio.connect(
            url,
            socketio_path="/api/socket",
            auth={"token": TOKEN},
            transports=["websocket"],
            wait_timeout=20,
        )
        await sio.call("subscribe_all", {"steps": STEPS, "batch": True}, timeout=20)
        states.append(state)

    for start in range(0, count, 20):  # connect in batches so the server is not flooded
        await asyncio.gather(*(one() for _ in range(min(20, count - start))))
    return states


async def run(executions: int, clients: int, concurrency: int, deadline: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="we-bench-") as folder:
        workdir = Path(folder)
        proc, url = start_serve(workdir, concurrency)
        db = Database(f"sqlite:///{workdir / 'workflow-engine.db'}")
        states: list[dict[str, Any]] = []
        try:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as api:
                assert (await api.post("/api/workflows", json=WORKFLOW)).status_code == 201
                states = await connect_clients(url, clients, set())
                limit = asyncio.Semaphore(20)

                async def submit(n: int) -> str:
                    async with limit:
                        r = await api.post("/api/workflows/bench/execute", json={"input": {"n": n}})
                        execution_id: str = r.json()["executionId"]
                        return execution_id

                ids = set(await asyncio.gather(*(submit(n) for n in range(executions))))
            stop_at = time.monotonic() + deadline
            while time.monotonic() < stop_at:
                async with db.read() as conn:
                    done = await conn.scalar(
                        text("SELECT count(*) FROM executions WHERE status = 'completed'")
                    )
                if done == executions and all(s["completed"] >= ids for s in states):
                    break
                await asyncio.sleep(0.25)
            async with db.read() as conn:
                row = (
                    (
                        await conn.execute(
                            text(
                                "SELECT count(*) AS n, min(created_at) AS first, "
                                "max(completed_at) AS last FROM executions "
                                "WHERE status = 'completed'"
                            )
                        )
                    )
                    .mappings()
                    .one()
                )
            first, last = (Database_time(row["first"]), Database_time(row["last"]))
            seconds = (last - first) if row["n"] else float("nan")
            return {
                "completed": row["n"],
                "seconds": seconds,
                "throughput": row["n"] / seconds if row["n"] else 0.0,
                "clients_with_all": sum(1 for s in states if s["completed"] >= ids),
                "events_per_client": (
                    sum(s["events"] for s in states) / len(states) if states else 0
                ),
            }
        finally:
            for state in states:
                await state["sio"].disconnect()
            await db.dispose()
            proc.terminate()
            proc.wait(timeout=30)
            if os.environ.get("BENCH_SHOW_LOG"):
                print((workdir / "serve.log").read_text()[-3000:])


def Database_time(value: Any) -> float:
    from datetime import datetime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return float(value.timestamp())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=500)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--deadline", type=float, default=240, help="seconds per run, at most")
    args = parser.parse_args()
    base = asyncio.run(run(args.executions, 0, args.concurrency, args.deadline))
    print(
        f"A. no clients:       {base['completed']} executions in {base['seconds']:.2f} s "
        f"= {base['throughput']:.1f}/s"
    )
    load = asyncio.run(run(args.executions, args.clients, args.concurrency, args.deadline))
    print(
        f"B. {args.clients} clients:    {load['completed']} executions in "
        f"{load['seconds']:.2f} s = {load['throughput']:.1f}/s; "
        f"{load['clients_with_all']}/{args.clients} clients got every completion "
        f"({load['events_per_client']:.0f} events each)"
    )
    drop = 100 * (1 - load["throughput"] / base["throughput"]) if base["throughput"] else 0
    verdict = "OK" if drop < 20 and load["clients_with_all"] == args.clients else "NOT MET"
    print(
        f"throughput drop: {drop:.1f}% (target < 20%, every client gets every completion): "
        f"{verdict}"
    )


if __name__ == "__main__":
    main()
