"""Loopback stand-ins for the services telemetry talks to, for tests that run the engine as a
user would: a Sentry server that keeps the envelopes it is sent, and an OTLP/HTTP collector
that keeps the spans it is sent (parsed with OpenTelemetry's own protobuf classes)."""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

T = TypeVar("T")


@dataclass
class Envelope:
    """One Sentry envelope: its header and its items as (item header, payload bytes)."""

    project: str
    raw: bytes
    header: dict[str, Any]
    items: list[tuple[dict[str, Any], bytes]]

    def events(self) -> list[dict[str, Any]]:
        """The `event` items, parsed."""
        return [json.loads(body) for head, body in self.items if head.get("type") == "event"]


@dataclass
class SpanRecord:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_code: int
    start_ns: int
    end_ns: int


@dataclass
class _Received:
    lock: threading.Lock = field(default_factory=threading.Lock)
    envelopes: list[Envelope] = field(default_factory=list)
    spans: list[SpanRecord] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    """Every request body, decoded, as received (to look for what must never be sent)."""


def parse_envelope(project: str, raw: bytes) -> Envelope:
    """Sentry's envelope format: a JSON header line, then items, each a JSON header line and a
    payload of the header's `length` bytes (or up to the next newline without one)."""
    newline = raw.index(b"\n") if b"\n" in raw else len(raw)
    header = json.loads(raw[:newline])
    at = newline + 1
    items = []
    while at < len(raw):
        end = raw.find(b"\n", at)
        end = len(raw) if end < 0 else end
        line = raw[at:end].strip()
        at = end + 1
        if not line:
            continue
        item_header = json.loads(line)
        length = item_header.get("length")
        if length is None:
            end = raw.find(b"\n", at)
            end = len(raw) if end < 0 else end
            payload, at = raw[at:end], end + 1
        else:
            payload, at = raw[at : at + length], at + length + 1
        items.append((item_header, payload))
    return Envelope(project, raw, header, items)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    found = getattr(value, kind)
    if kind == "array_value":
        return [_value(v) for v in found.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in found.values}
    return found


def parse_spans(body: bytes) -> list[SpanRecord]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    records = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                records.append(
                    SpanRecord(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        attributes={kv.key: _value(kv.value) for kv in span.attributes},
                        resource=resource,
                        status_code=span.status.code,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                    )
                )
    return records


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, received: _Received) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received = received


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding == "gzip":
            return gzip.decompress(raw)
        if encoding == "deflate":
            return zlib.decompress(raw)
        if encoding not in ("", "identity"):
            raise AssertionError(f"unexpected Content-Encoding {encoding!r}")
        return raw

    def do_POST(self) -> None:
        body = self._body()
        received = self.server.received
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if parts[:1] == ["api"] and parts[2:] == ["envelope"]:
            with received.lock:
                received.bodies.append(body)
                received.envelopes.append(parse_envelope(parts[1], body))
            self._reply(200, b"{}", "application/json")
        elif parts == ["v1", "traces"]:
            with received.lock:
                received.bodies.append(body)
                received.spans += parse_spans(body)
            reply = ExportTraceServiceResponse().SerializeToString()
            self._reply(200, reply, "application/x-protobuf")
        else:
            self._reply(404, b"not found", "text/plain")


class Receiver:
    """What the fake services received; `wait_for` polls it (bounded)."""

    def __init__(self, server: _Server) -> None:
        self._received = server.received
        self.url = f"http://127.0.0.1:{server.server_address[1]}"

    @property
    def sentry_dsn(self) -> str:
        """A DSN of project 1 on this server."""
        return f"http://public-key@{self.url.removeprefix('http://')}/1"

    def envelopes(self) -> list[Envelope]:
        with self._received.lock:
            return list(self._received.envelopes)

    def events(self) -> list[dict[str, Any]]:
        return [event for envelope in self.envelopes() for event in envelope.events()]

    def spans(self) -> list[SpanRecord]:
        with self._received.lock:
            return list(self._received.spans)

    def bodies(self) -> list[bytes]:
        with self._received.lock:
            return list(self._received.bodies)

    def wait_for(self, found: Callable[[], T | None], what: str, timeout: float = 30) -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = found()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"never received {what} (in {timeout} s)")
            time.sleep(0.05)


@contextmanager
def run_receiver() -> Iterator[Receiver]:
    """A loopback server that is both the Sentry server and the OTLP collector."""
    server = _Server(_Received())
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield Receiver(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
