"""Signed webhook triggers (DESIGN.md section 14): `POST /api/hooks/{path}`.

A call is authenticated by its trigger's own secret (domain/signatures.py), never by an API key:
the secret is named in the trigger (`{{ secrets.NAME }}`) and read from the `serve` process's
WORKFLOW_SECRET_NAME; it is never stored, logged or answered. What starts is an ordinary
execution of the trigger's workflow, linked to the trigger (`triggerId`), input = the body.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from workflow_engine.domain.definition import secret_name
from workflow_engine.domain.signatures import authentic
from workflow_engine.engine.debounce import Held
from workflow_engine.engine.endings import Endings
from workflow_engine.engine.secrets import Secrets
from workflow_engine.engine.service import EngineService, Started
from workflow_engine.errors import NotFound, Unauthenticated
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.db import Database, Row

log = logging.getLogger(__name__)
MAX_WAIT_MS = 30_000
"""The longest `?wait=` a call may ask for: a request held longer ties up the caller, and
proxies in between cut idle requests at 30 to 60 s."""

REFUSED = (
    "missing or wrong signature: send 'X-Signature-256: sha256=<hex HMAC-SHA256 of the raw "
    "body keyed by the hook's secret>' or 'Authorization: Bearer <the hook's secret>'"
)


@dataclass(frozen=True)
class Call:
    """One call of a hook, as received."""

    path: str
    body: bytes
    signed: str | None
    """The `X-Signature-256` header."""
    bearer: str | None
    """The `Authorization: Bearer` credential."""


class Hooks:
    def __init__(
        self, *, db: Database, service: EngineService, secrets: Secrets, endings: Endings
    ) -> None:
        self.db = db
        self.service = service
        self.secrets = secrets
        self.endings = endings

    async def authenticate(self, call: Call) -> Row:
        """The trigger serving `call.path`, if the call proves its secret. NotFound for a path
        no live workflow serves; Unauthenticated (saying nothing of the secret) otherwise."""
        async with self.db.read() as conn:
            trigger = await wf_store.hook_trigger(conn, call.path)
        if trigger is None:
            raise NotFound(f"no webhook at /api/hooks/{call.path}")
        secret = self._secret(trigger)
        if secret is None or not authentic(
            secret, call.body, signed=call.signed, bearer=call.bearer
        ):
            raise Unauthenticated(REFUSED)
        return trigger

    def _secret(self, trigger: Row) -> str | None:
        name = secret_name(str(trigger["config"].get("secret", "")))
        secret = self.secrets.values().get(name) if name else None
        if secret is None:
            # Nobody can call it: say so where the operator looks, never to the caller.
            log.warning(
                "webhook /api/hooks/%s refused: its secret %s is not set in this process "
                "(WORKFLOW_SECRET_%s)",
                trigger["hook_path"],
                name,
                name,
            )
        return secret

    async def start(
        self, trigger: Row, input: Any, *, idempotency_key: str | None = None
    ) -> Started | Held:
        """Start the trigger's workflow (Conflict if the trigger is disabled); a debounced
        trigger keeps the call (`Held`) to start one execution after the burst."""
        return await self.service.fire_trigger(
            trigger["id"], input, idempotency_key=idempotency_key
        )
