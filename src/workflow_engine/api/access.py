"""Who is asking: the one place that turns a bearer value or a session cookie into a Principal.

The API's guard (api/middleware.py), Socket.io (api/realtime.py) and the pages (web/render.py)
all ask a `Gate`. The API token (API_TOKEN or DATA_DIR/api-token) is the bootstrap admin key;
named keys are checked by the engine's KeyRing (engine/keys.py). With authentication disabled
everyone is the `anonymous` admin.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from workflow_engine.api.session import cookie_from_header, make_session, read_session
from workflow_engine.domain.access import ANONYMOUS, BOOTSTRAP, Principal, looks_like_key
from workflow_engine.engine.keys import KeyRing


def bearer_value(header: str | None) -> str | None:
    """The credential of an `Authorization: Bearer <value>` header."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


class Gate:
    def __init__(self, token: str | None) -> None:
        self.token = token
        self.keys: KeyRing | None = None
        """Set when the engine has started (the app's lifespan)."""

    @property
    def enabled(self) -> bool:
        return self.token is not None

    async def key(self, value: str | None) -> Principal | None:
        """Whose key `value` is: the API token or a live named key."""
        if self.token is None:
            return ANONYMOUS
        if not value:
            return None
        if secrets.compare_digest(value.encode(), self.token.encode()):
            return BOOTSTRAP
        if self.keys is not None and looks_like_key(value):
            return await self.keys.authenticate(value)
        return None

    async def session(self, cookie: str | None) -> Principal | None:
        """Whose session the cookie value is (None: none, expired, or its key was revoked)."""
        if self.token is None:
            return ANONYMOUS
        session = read_session(self.token, cookie)
        if session is None:
            return None
        if session.key_id is None:
            return BOOTSTRAP
        if self.keys is None:
            return None
        return await self.keys.principal_for_id(session.key_id)

    async def request(self, headers: Mapping[str, str]) -> tuple[Principal | None, bool]:
        """The principal of lower-cased request `headers`, and whether it came from the session
        cookie (then state changes need the CSRF check). A bearer header wins over a cookie."""
        if self.token is None:
            return ANONYMOUS, False
        value = bearer_value(headers.get("authorization"))
        if value is not None:
            principal = await self.key(value)
            if principal is not None:
                return principal, False
        principal = await self.session(cookie_from_header(headers.get("cookie")))
        return principal, principal is not None

    def session_cookie(self, principal: Principal) -> str:
        """The cookie value for a browser that just logged in as `principal`."""
        assert self.token is not None
        return make_session(self.token, key_id=principal.key_id)
