"""A lean HTTP/1.1 client for the one request the load generator repeats: POST .../execute.

httpx costs the load generator about 3 ms of CPU per request, which on a 2-core machine is CPU
the engine under test does not get (it was a fifth of the machine in the throughput runs). This
client keeps persistent connections, sends a request built once, and reads only the status line,
Content-Length and the body: tens of microseconds per request.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field


class TriggerError(RuntimeError):
    """The engine did not answer 202 (or the connection failed)."""


@dataclass
class TriggerClient:
    host: str
    port: int
    token: str
    timeout_s: float = 60.0
    _idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)

    def request(self, workflow_id: str, body: bytes = b'{"input":{}}') -> bytes:
        head = (
            f"POST /api/workflows/{workflow_id}/execute HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def send(self, request: bytes) -> str:
        """Send one prepared request; the execution id of the 202 answer."""
        try:
            return await asyncio.wait_for(self._send(request), self.timeout_s)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            raise TriggerError(f"trigger failed: {exc!r}") from exc

    async def _send(self, request: bytes) -> str:
        reused = bool(self._idle)
        if reused:
            reader, writer = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(request)
            status_line = await reader.readline()
            if not status_line and reused:
                # The server closed this idle connection (its keep-alive timeout) before it
                # read the request: send it again on a new one.
                writer.close()
                self._idle.clear()
                return await self._send(request)
            length = 0
            keep = True
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                lowered = name.strip().lower()
                if lowered == b"content-length":
                    length = int(value)
                elif lowered == b"connection" and value.strip().lower() == b"close":
                    keep = False
            body = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if keep:
            self._idle.append((reader, writer))
        else:
            writer.close()
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or parts[1] != b"202":
            raise TriggerError(f"execute: {status_line!r} {body[:300]!r}")
        execution_id: str = json.loads(body)["executionId"]
        return execution_id

    async def close(self) -> None:
        for _reader, writer in self._idle:
            writer.close()
        self._idle.clear()
