"""Socket.io at `/api/socket` (DESIGN.md section 7): authentication, client events, rooms.

Client -> server (each answers with an acknowledgement `{"ok": ..., ...}`):
- `subscribe` with an execution id, or `{"executionId": ..., "afterSeq": n}`: the stored events
  after `afterSeq` (default 0: all of them), then the live ones, in `seq` order, no duplicates.
- `unsubscribe` with an execution id.
- `subscribe_workflow` / `unsubscribe_workflow` with a workflow id or name (or
  `{"workflowId": ..., "steps": true}`): live `started`/`completed`/`failed`/`cancelled` events of
  its executions, and their step events with `"steps": true`. `subscribe_all` (optionally
  `{"steps": true}`) / `unsubscribe_all`: the same for every execution. With `"batch": true`
  these come every 100 ms as one `events` message holding a list of `{"event": name, ...}`.

A connection must authenticate: `auth={"token": ...}`, an `Authorization: Bearer` header, or the
UI's session cookie, with a key whose role may read (not a `trigger` key); anything else is
refused before any event can be read. Revoking a key disconnects its sockets in this process (and
in the others that hear of it). Rooms are named by the server only, so a client can join nothing
but what these events let it follow.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from starlette.types import ASGIApp, Receive, Scope, Send

from workflow_engine.api.access import Gate, bearer_value
from workflow_engine.api.realtime_hub import (
    ALL_ROOM,
    RealtimeHub,
    batch_room,
    steps_room,
    workflow_room,
)
from workflow_engine.api.session import cookie_from_header
from workflow_engine.domain.access import Permission, Principal
from workflow_engine.engine.keys import KeyRing
from workflow_engine.errors import NotFound, StorageError
from workflow_engine.events.bus import EventBus
from workflow_engine.settings import Settings
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.db import Database

log = logging.getLogger(__name__)
SOCKET_PATH = "/api/socket"


def is_socket_path(path: str) -> bool:
    """`/api/socket` and the paths under it, which Socket.io answers; not `/api/socketX`."""
    return path == SOCKET_PATH or path.startswith(SOCKET_PATH + "/")


MAX_SUBSCRIPTIONS = 200
"""Per connection: a page follows a handful of executions; more is a runaway client."""


class Realtime:
    """The Socket.io server of one app; `start` wires it to the engine once the engine exists."""

    def __init__(self, settings: Settings, *, gate: Gate) -> None:
        self.gate = gate
        self._sockets_of_key: dict[str, set[str]] = {}
        self._key_of_socket: dict[str, str] = {}
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            # None: same origin only (the UI). CORS_ORIGINS opens it to other front ends.
            cors_allowed_origins=settings.cors_origins or None,
            logger=False,
            engineio_logger=False,
        )
        self.hub = RealtimeHub(self.sio)
        self.asgi = socketio.ASGIApp(self.sio, socketio_path=None)
        self._register()

    async def start(self, db: Database, bus: EventBus, keys: KeyRing) -> None:
        keys.on_revoked(self._key_revoked)
        await self.hub.start(db, bus)

    async def stop(self) -> None:
        await self.hub.stop()

    # --- authentication -------------------------------------------------------------------------

    async def principal(self, environ: dict[str, Any], auth: Any) -> Principal | None:
        if isinstance(auth, dict) and isinstance(auth.get("token"), str):
            return await self.gate.key(auth["token"])
        value = bearer_value(environ.get("HTTP_AUTHORIZATION"))
        if value is not None:
            principal = await self.gate.key(value)
            if principal is not None:
                return principal
        return await self.gate.session(cookie_from_header(environ.get("HTTP_COOKIE")))

    async def _key_revoked(self, key_id: str) -> None:
        for sid in self._sockets_of_key.pop(key_id, set()):
            self._key_of_socket.pop(sid, None)
            await self.sio.disconnect(sid)

    # --- handlers -------------------------------------------------------------------------------

    def _register(self) -> None:
        for name in (
            "connect",
            "disconnect",
            "subscribe",
            "unsubscribe",
            "subscribe_workflow",
            "unsubscribe_workflow",
            "subscribe_all",
            "unsubscribe_all",
        ):
            self.sio.on(name, handler=getattr(self, f"on_{name}"))

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            principal = await self.principal(environ, auth)
        except StorageError:
            raise socketio.exceptions.ConnectionRefusedError(
                "the database is unavailable right now; try again shortly"
            ) from None
        if principal is None:
            raise socketio.exceptions.ConnectionRefusedError(
                "authentication failed: pass auth={'token': API_TOKEN or a key} or log in"
            )
        if not principal.can(Permission.READ):
            raise socketio.exceptions.ConnectionRefusedError(
                f"the {principal.role} key {principal.name!r} may not follow executions"
            )
        if principal.key_id is not None:
            self._sockets_of_key.setdefault(principal.key_id, set()).add(sid)
            self._key_of_socket[sid] = principal.key_id

    async def on_disconnect(self, sid: str, *args: Any) -> None:
        self.hub.drop_client(sid)
        key_id = self._key_of_socket.pop(sid, None)
        if key_id is not None:
            sockets = self._sockets_of_key.get(key_id)
            if sockets is not None:
                sockets.discard(sid)
                if not sockets:
                    del self._sockets_of_key[key_id]

    async def on_subscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        execution_id, after_seq = _subscribe_args(data)
        if execution_id is None:
            return _error("subscribe takes an execution id or {executionId, afterSeq}")
        if self.hub.count(sid) >= MAX_SUBSCRIPTIONS:
            return _error(f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection")
        row = await self._execution(execution_id)
        if row is None:
            return _error(f"execution {execution_id!r} not found")
        self.hub.subscribe(sid, row["id"], row["workflow_id"], after_seq)
        return {"ok": True, "executionId": row["id"], "status": row["status"]}

    async def on_unsubscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        execution_id, _ = _subscribe_args(data)
        if execution_id is None:
            return _error("unsubscribe takes an execution id")
        return {"ok": self.hub.unsubscribe(sid, execution_id), "executionId": execution_id}

    async def on_subscribe_workflow(self, sid: str, data: Any = None) -> dict[str, Any]:
        workflow_id = await self._workflow_id(data)
        if workflow_id is None:
            return _error(f"workflow {data!r} not found")
        await self._join(sid, workflow_room(workflow_id), data)
        return {"ok": True, "workflowId": workflow_id}

    async def on_unsubscribe_workflow(self, sid: str, data: Any = None) -> dict[str, Any]:
        workflow_id = await self._workflow_id(data)
        if workflow_id is not None:
            await self._leave(sid, workflow_room(workflow_id))
        return {"ok": workflow_id is not None, "workflowId": workflow_id}

    async def on_subscribe_all(self, sid: str, data: Any = None) -> dict[str, Any]:
        await self._join(sid, ALL_ROOM, data)
        return {"ok": True}

    async def on_unsubscribe_all(self, sid: str, *args: Any) -> dict[str, Any]:
        await self._leave(sid, ALL_ROOM)
        return {"ok": True}

    async def _join(self, sid: str, room: str, options: Any) -> None:
        """Execution events always; step events too with `{"steps": true}`; all of them in
        `events` batches with `{"batch": true}`."""
        await self._leave(sid, room)
        wanted = options if isinstance(options, dict) else {}
        place = batch_room if wanted.get("batch") is True else (lambda name: name)
        await self.sio.enter_room(sid, place(room))
        if wanted.get("steps") is True:
            await self.sio.enter_room(sid, place(steps_room(room)))

    async def _leave(self, sid: str, room: str) -> None:
        for name in (room, steps_room(room)):
            await self.sio.leave_room(sid, name)
            await self.sio.leave_room(sid, batch_room(name))

    async def _execution(self, execution_id: str) -> Any:
        db = self.hub.db
        if db is None:
            return None
        async with db.read() as conn:
            try:
                return await ex_store.get_execution(conn, execution_id)
            except NotFound:
                return None

    async def _workflow_id(self, data: Any) -> str | None:
        if isinstance(data, dict):
            data = data.get("workflowId")
        db = self.hub.db
        if not isinstance(data, str) or not data or len(data) > 200 or db is None:
            return None
        async with db.read() as conn:
            try:
                row = await wf_store.get_workflow(conn, data)
            except NotFound:
                return None
        return str(row["id"])


def _subscribe_args(data: Any) -> tuple[str | None, int]:
    """(execution id, afterSeq) from `"id"` or `{"executionId": "id", "afterSeq": n}`."""
    after: Any = 0
    if isinstance(data, dict):
        after = data.get("afterSeq") or 0
        data = data.get("executionId")
    if not isinstance(data, str) or not data or len(data) > 64:
        return None, 0
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        after = 0
    return data, after


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


class SocketMount:
    """ASGI middleware: `/api/socket/...` goes to Socket.io, everything else to the app. It sits
    outside the API guard: Socket.io authenticates in its own `connect` handler."""

    def __init__(self, app: ASGIApp, *, realtime: Realtime) -> None:
        self.app = app
        self.realtime = realtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] in ("http", "websocket") and is_socket_path(path):
            await self.realtime.asgi(scope, receive, send)
            return
        await self.app(scope, receive, send)
