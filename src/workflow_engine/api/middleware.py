"""ASGI middleware: who is asking (the API token, a named key or the UI's session), body size
cap and content type, before any route runs. What the caller may do is each route's declared
permission (api/permissions.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workflow_engine.api.access import Gate
from workflow_engine.api.realtime import is_socket_path
from workflow_engine.api.session import csrf_ok
from workflow_engine.errors import StorageError

OPEN_PATHS = ("/api/health", "/api/ready")
SIGNED_PREFIXES = ("/api/hooks/",)
"""Routes that authenticate each call by a secret of their own (signed webhooks): no key is
asked (an API key gets nothing there), and their bodies are read raw, whatever their type."""


async def _reply(
    send: Send, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"detail": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ApiGuard:
    """For `/api/*` requests: require a key (the API token, a named key, or the UI's session
    cookie) and put its Principal in the request's state, cap the body, require JSON bodies."""

    def __init__(self, app: ASGIApp, *, gate: Gate, max_body_bytes: int) -> None:
        self.app = app
        self.gate = gate
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        # Socket.io's path authenticates on connect (SocketMount answers it before this guard);
        # a mere prefix match would leave any future `/api/socket...` route open.
        signed = path.startswith(SIGNED_PREFIXES)
        if path not in OPEN_PATHS and not signed and not is_socket_path(path):
            try:
                principal, by_cookie = await self.gate.request(headers)
            except StorageError:
                await _reply(
                    send,
                    503,
                    "the database is unavailable right now; try again shortly",
                    [(b"retry-after", b"5")],
                )
                return
            if principal is None:
                await _reply(
                    send,
                    401,
                    "missing, invalid or revoked API token: send the header "
                    "'Authorization: Bearer <token>' with the API_TOKEN or a named key",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
            scope.setdefault("state", {})["principal"] = principal
            if by_cookie and not csrf_ok(scope["method"], headers):
                await _reply(
                    send,
                    403,
                    "a browser session may change state only from the engine's own pages "
                    "(send X-Requested-With from the same origin)",
                )
                return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            length = headers.get("content-length")
            if length and length.isdigit() and int(length) > self.max_body:
                await _reply(send, 413, f"request body is larger than {self.max_body} bytes")
                return
            content_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if (
                not signed
                and (length not in (None, "0"))
                and content_type
                and content_type != "application/json"
                and not content_type.endswith("+json")
            ):
                await _reply(
                    send, 415, f"unsupported content type {content_type!r}: send application/json"
                )
                return
            receive = self._capped(receive, send)
        await self.app(scope, receive, send)

    def _capped(self, receive: Receive, send: Send) -> Receive:
        seen = 0
        limit = self.max_body

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge()
            return message

        return capped


class BodyTooLarge(Exception):
    """Raised while reading a streamed body that went over the cap; the app answers 413."""
