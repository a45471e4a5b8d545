"""The `http` step against a real loopback server, through the SSRF-guarded client.

Every client here opens sockets through `LoopbackOnlyBackend`, so even a guard bug could never
send traffic off the machine; it also records each connection attempt the guard let through.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpcore
import httpx
import pytest

from workflow_engine.errors import BlockedDestination, NonRetryableStepError, StepError
from workflow_engine.net.guard import make_http_client
from workflow_engine.steps.base import StepContext
from workflow_engine.steps.http import HttpConfig, HttpStep

pytestmark = pytest.mark.timeout(30)

METADATA_URL = "http://169.254.169.254/latest/meta-data/"


# --- loopback server -----------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class RecordingServer(ThreadingHTTPServer):
    """Counts accepted connections and records every request it reads."""

    # Join handler threads on close so no socket outlives the test.
    daemon_threads = False
    block_on_close = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.connections = 0
        self.requests: list[Recorded] = []
        self.release = threading.Event()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections += 1
        return True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The client hanging up mid-response (timeouts, size cap) is expected here.
        pass


class Handler(BaseHTTPRequestHandler):
    server: RecordingServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.requests.append(Recorded(self.command, self.path, headers, body))

        if url.path == "/echo":
            payload = {"method": self.command, "query": params, "headers": headers}
            payload["body"] = body.decode()
            self._send(200, json.dumps(payload).encode(), "application/json")
        elif url.path == "/text":
            self._send(200, b"hello there", "text/plain; charset=utf-8", {"X-Custom": "yes"})
        elif url.path == "/bad-json":
            self._send(200, b"{not json", "application/json")
        elif url.path == "/missing":
            self._send(404, b"no such thing", "text/plain")
        elif url.path == "/limited":
            self._send(429, b"slow down", "text/plain", {"Retry-After": "2"})
        elif url.path == "/unavailable":
            self._send(503, b"x" * 500, "text/plain")
        elif url.path == "/redirect":
            status = int(params.get("status", "302"))
            self._send(status, b"", "text/plain", {"Location": params["to"]})
        elif url.path == "/slow":
            self.server.release.wait(10)
            self._send(200, b"late", "text/plain")
        elif url.path == "/big":
            # No Content-Length: the cap must hold while streaming, not just on the header.
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            chunk = b"a" * 65536
            for _ in range(10 * 16 + 1):
                self.wfile.write(chunk)
        else:
            self._send(500, b"unknown test path", "text/plain")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    def _send(
        self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@dataclass
class Server:
    httpd: RecordingServer
    port: int

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    @property
    def requests(self) -> list[Recorded]:
        return self.httpd.requests


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = RecordingServer()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(httpd, httpd.server_address[1])
    finally:
        httpd.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def silent_listener() -> Iterator[socket.socket]:
    """A socket listening on 127.0.0.2 that is never accepted from.

    The kernel completes TCP handshakes into the backlog without accept(), so a non-empty
    backlog afterwards proves a connection was made.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.2", 0))
    except OSError:
        sock.close()
        pytest.skip("127.0.0.2 is not bindable on this machine")
    sock.listen(8)
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def assert_no_connection(sock: socket.socket) -> None:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return
    conn.close()
    pytest.fail("a connection reached the listener")


# --- guarded client ------------------------------------------------------------------------------


class LoopbackOnlyBackend(httpcore.AsyncNetworkBackend):
    """Opens sockets only to loopback addresses, recording every attempt the guard allowed."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.attempts.append(host)
        if not ipaddress.ip_address(host).is_loopback:
            raise AssertionError(f"test tried to leave the machine: {host}")
        return await self._inner.connect_tcp(
            host, port, timeout, local_address=local_address, socket_options=socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@dataclass
class Harness:
    backend: LoopbackOnlyBackend
    client: httpx.AsyncClient
    logs: list[tuple[str, str]] = field(default_factory=list)

    def ctx(self, step_key: str = "fetch") -> StepContext:
        async def log(level: str, message: str, meta: dict[str, Any] | None) -> None:
            self.logs.append((level, message))

        return StepContext(
            execution_id="exec-123",
            workflow_id="wf-1",
            step_key=step_key,
            attempt=1,
            http=self.client,
            log=log,
        )

    async def run(self, **config: Any) -> Any:
        step = HttpStep()
        return await step.run(step.validate_config(config), self.ctx())


async def harness(allowlist: Sequence[str]) -> AsyncIterator[Harness]:
    backend = LoopbackOnlyBackend()
    async with make_http_client(allowlist, timeout_s=5, network_backend=backend) as client:
        yield Harness(backend, client)


@pytest.fixture
async def allowed() -> AsyncIterator[Harness]:
    """Only 127.0.0.1 is allowlisted."""
    async for h in harness(["127.0.0.1"]):
        yield h


@pytest.fixture
async def strict() -> AsyncIterator[Harness]:
    """Nothing is allowlisted."""
    async for h in harness([]):
        yield h


# --- successes -----------------------------------------------------------------------------------


async def test_get_json_with_idempotency_key(allowed: Harness, server: Server) -> None:
    out = await allowed.run(url=server.url("/echo"), query={"n": 3, "flag": True})
    assert out["status"] == 200
    assert out["headers"]["content-type"] == "application/json"
    body = out["body"]
    assert body["method"] == "GET"
    assert body["query"] == {"n": "3", "flag": "true"}
    assert body["headers"]["idempotency-key"] == "exec-123:fetch"
    assert server.requests[0].headers["host"] == f"127.0.0.1:{server.port}"
    assert allowed.backend.attempts == ["127.0.0.1"]


async def test_post_json_and_custom_headers(allowed: Harness, server: Server) -> None:
    out = await allowed.run(
        url=server.url("/echo"),
        method="post",
        headers={"X-Trace": "t1"},
        json={"a": [1, 2], "b": None},
    )
    body = out["body"]
    assert body["method"] == "POST"
    assert json.loads(body["body"]) == {"a": [1, 2], "b": None}
    assert body["headers"]["content-type"] == "application/json"
    assert body["headers"]["x-trace"] == "t1"


async def test_text_body_and_lowercased_headers(allowed: Harness, server: Server) -> None:
    out = await allowed.run(url=server.url("/text"), method="PUT", body="raw text")
    assert out["body"] == "hello there"
    assert out["headers"]["x-custom"] == "yes"
    assert server.requests[0].body == b"raw text"


async def test_invalid_json_falls_back_to_text(allowed: Harness, server: Server) -> None:
    out = await allowed.run(url=server.url("/bad-json"))
    assert out["body"] == "{not json"


async def test_user_idempotency_key_wins(allowed: Harness, server: Server) -> None:
    await allowed.run(url=server.url("/echo"), headers={"idempotency-key": "mine"})
    assert server.requests[0].headers["idempotency-key"] == "mine"


async def test_default_client_backend_works(server: Server) -> None:
    async with make_http_client(["127.0.0.1"], timeout_s=5) as client:
        ctx = Harness(LoopbackOnlyBackend(), client).ctx()
        out = await HttpStep().run(HttpConfig(url=server.url("/text")), ctx)
    assert out["status"] == 200


async def test_localhost_allowlisted_by_name(server: Server) -> None:
    async for h in harness(["localhost"]):
        out = await h.run(url=server.url("/text", host="localhost"))
        assert out["status"] == 200
        # The name was resolved once by the guard; sockets go to the checked IPs.
        assert "localhost" not in h.backend.attempts
        assert server.requests[0].headers["host"] == f"localhost:{server.port}"


# --- error statuses ------------------------------------------------------------------------------


async def test_404_is_not_retryable(allowed: Harness, server: Server) -> None:
    with pytest.raises(NonRetryableStepError) as info:
        await allowed.run(url=server.url("/missing") + "?token=secret")
    assert info.value.message == f"HTTP 404 from {server.url('/missing')}: no such thing"


async def test_429_is_retryable_with_retry_after(allowed: Harness, server: Server) -> None:
    with pytest.raises(StepError) as info:
        await allowed.run(url=server.url("/limited"))
    assert info.value.retryable
    assert info.value.retry_after_ms == 2000
    assert "HTTP 429" in info.value.message


async def test_503_is_retryable_and_body_truncated(allowed: Harness, server: Server) -> None:
    with pytest.raises(StepError) as info:
        await allowed.run(url=server.url("/unavailable"))
    assert info.value.retryable and info.value.retry_after_ms is None
    assert info.value.message == f"HTTP 503 from {server.url('/unavailable')}: " + "x" * 200


async def test_expect_status_overrides_success(allowed: Harness, server: Server) -> None:
    out = await allowed.run(url=server.url("/missing"), expectStatus=[404])
    assert out["status"] == 404
    with pytest.raises(NonRetryableStepError):
        await allowed.run(url=server.url("/text"), expectStatus=[201])


async def test_body_over_cap_is_rejected(allowed: Harness, server: Server) -> None:
    with pytest.raises(NonRetryableStepError, match="exceeds 10 MiB"):
        await allowed.run(url=server.url("/big"))


async def test_non_http_scheme_is_rejected(allowed: Harness) -> None:
    with pytest.raises(NonRetryableStepError, match="only http and https"):
        await allowed.run(url="file:///etc/passwd")
    assert allowed.backend.attempts == []


async def test_invalid_raw_config_is_not_retryable(allowed: Harness) -> None:
    with pytest.raises(NonRetryableStepError, match="mutually exclusive"):
        await HttpStep().run({"url": "http://x.test/", "json": {}, "body": "b"}, allowed.ctx())


async def test_connection_refused_is_retryable(allowed: Harness) -> None:
    # Bind then close to get a loopback port nobody listens on.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StepError) as info:
        await allowed.run(url=f"http://127.0.0.1:{port}/")
    assert info.value.retryable
    assert info.value.message.startswith(f"Connection refused to 127.0.0.1:{port}")


async def test_slow_response_times_out(allowed: Harness, server: Server) -> None:
    started = time.monotonic()
    with pytest.raises(StepError) as info:
        await allowed.run(url=server.url("/slow"), timeoutMs=200)
    assert time.monotonic() - started < 3
    assert info.value.retryable
    assert "timed out after 200 ms" in info.value.message


# --- redirects -----------------------------------------------------------------------------------


def redirect(server: Server, to: str, status: int = 302) -> str:
    return server.url(f"/redirect?status={status}&to={quote(to, safe='')}")


async def test_redirect_to_allowed_path_is_followed(allowed: Harness, server: Server) -> None:
    out = await allowed.run(url=redirect(server, "/echo?hop=2"))
    assert out["status"] == 200
    assert out["body"]["query"] == {"hop": "2"}
    # The same key on every hop, so the target can deduplicate.
    assert [r.headers["idempotency-key"] for r in server.requests] == ["exec-123:fetch"] * 2
    assert allowed.logs and "redirect" in allowed.logs[0][1]


async def test_303_turns_post_into_get(allowed: Harness, server: Server) -> None:
    out = await allowed.run(url=redirect(server, "/echo", 303), method="POST", json={"x": 1})
    assert out["body"]["method"] == "GET"
    assert out["body"]["body"] == ""


async def test_307_keeps_method_and_body(allowed: Harness, server: Server) -> None:
    out = await allowed.run(url=redirect(server, "/echo", 307), method="POST", body="keep")
    assert out["body"]["method"] == "POST"
    assert out["body"]["body"] == "keep"


async def test_too_many_redirects(allowed: Harness, server: Server) -> None:
    with pytest.raises(NonRetryableStepError, match="Too many redirects"):
        await allowed.run(url=redirect(server, "/echo"), maxRedirects=0)


async def test_redirect_to_metadata_is_blocked(allowed: Harness, server: Server) -> None:
    with pytest.raises(BlockedDestination) as info:
        await allowed.run(url=redirect(server, METADATA_URL))
    assert "169.254.169.254 (link-local address)" in info.value.message
    assert allowed.backend.attempts == ["127.0.0.1"]


async def test_redirect_to_other_loopback_never_connects(
    allowed: Harness, server: Server, silent_listener: socket.socket
) -> None:
    port = silent_listener.getsockname()[1]
    with pytest.raises(BlockedDestination, match="loopback"):
        await allowed.run(url=redirect(server, f"http://127.0.0.2:{port}/"))
    assert_no_connection(silent_listener)
    assert "127.0.0.2" not in allowed.backend.attempts


# --- blocked without any connection --------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_loopback_blocked_without_allowlist(
    strict: Harness, server: Server, host: str
) -> None:
    with pytest.raises(BlockedDestination, match="loopback"):
        await strict.run(url=server.url("/echo", host=host))
    assert server.httpd.connections == 0
    assert server.requests == []
    assert strict.backend.attempts == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/", "private address"),
        (METADATA_URL, "link-local address"),
        ("https://169.254.169.254/", "link-local address"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://[fe80::1]/", "link-local address"),
    ],
)
async def test_internal_addresses_blocked_before_connect(
    strict: Harness, url: str, reason: str
) -> None:
    started = time.monotonic()
    with pytest.raises(BlockedDestination, match=reason):
        await strict.run(url=url)
    assert strict.backend.attempts == []
    assert time.monotonic() - started < 1


async def test_json_null_is_sent(allowed: Harness, server: Server) -> None:
    out = await allowed.run(url=server.url("/echo"), method="POST", json=None)
    assert out["body"]["body"] == "null"
    assert out["body"]["headers"]["content-type"] == "application/json"
