"""A loopback HTTP server that workflows call in tests: it counts hits and records headers.

Routes (any method):
  /echo                 200, JSON {"method", "path", "query", "json"} of the request
  /count/<name>         200, JSON {"name", "hits"}: hits so far for <name>
  /flaky/<name>?fail=N  503 for the first N hits of <name>, then 200 {"hits"}
  /status/<code>        that status with a JSON body
  /retry-after/<name>?seconds=S  429 with Retry-After: S on the first hit, then 200
  /slow?ms=N            waits N ms, then 200
  /slowcount/<name>?ms=N  waits N ms, then 200 {"name", "hits"} (hits of <name> so far)
  /hold/<name>          waits until the test calls `target.release(name)` (at most 60 s), then 200
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Hit:
    method: str
    path: str
    idempotency_key: str | None
    at: float
    headers: dict[str, str] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.hits: dict[str, list[Hit]] = defaultdict(list)
        self.gates: dict[str, threading.Event] = defaultdict(threading.Event)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up (timeouts, cancels) are expected here


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = [p for p in url.path.split("/") if p]
        route, name = [*parts, "", ""][:2]
        with self.server.lock:
            hits = self.server.hits[f"{route}/{name}" if name else route]
            hits.append(
                Hit(
                    self.command,
                    url.path,
                    self.headers.get("Idempotency-Key"),
                    time.time(),
                    dict(self.headers.items()),
                )
            )
            count = len(hits)
        if route == "echo":
            body = json.loads(raw) if raw else None
            self._reply(
                200, {"method": self.command, "path": url.path, "query": query, "json": body}
            )
        elif route == "count":
            self._reply(200, {"name": name, "hits": count})
        elif route == "flaky":
            if count <= int(query.get("fail", "1")):
                self._reply(503, {"error": f"flaky failure {count}"})
            else:
                self._reply(200, {"hits": count})
        elif route == "status":
            self._reply(int(name), {"status": int(name)})
        elif route == "retry-after":
            if count == 1:
                self._reply(429, {"error": "slow down"}, {"Retry-After": query.get("seconds", "2")})
            else:
                self._reply(200, {"hits": count})
        elif route == "slowcount":
            time.sleep(int(query.get("ms", "100")) / 1000)
            self._reply(200, {"name": name, "hits": count})
        elif route == "hold":
            with self.server.lock:
                gate = self.server.gates[name]
            self._reply(200, {"name": name, "released": gate.wait(60)})
        elif route == "slow":
            time.sleep(int(query.get("ms", "1000")) / 1000)
            self._reply(200, {"slept": True})
        else:
            self._reply(404, {"error": "no such route"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class Target:
    """Handle on a running target server."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"

    def release(self, name: str) -> None:
        """Let every call of /hold/<name> (made or to come) answer."""
        with self._server.lock:
            gate = self._server.gates[name]
        gate.set()

    def hits(self, key: str) -> list[Hit]:
        """Hits of one route key, e.g. "count/step1" or "echo"."""
        with self._server.lock:
            return list(self._server.hits.get(key, []))


@contextmanager
def run_target() -> Iterator[Target]:
    server = _Server()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield Target(server)
    finally:
        for gate in list(server.gates.values()):
            gate.set()  # no handler thread left holding a request
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
