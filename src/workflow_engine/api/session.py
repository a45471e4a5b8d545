"""The UI's login session: a cookie signed with the API token, never a key itself.

The cookie holds `<issued-at>.<HMAC-SHA256(token, issued-at)>` for the API token, and
`<issued-at>.<HMAC-SHA256(token, issued-at and key id)>.<key id>` for a named key: anyone
holding it can prove they logged in with that key, but cannot recover the key or the token, nor
forge a session for another key. Each request with a named key's session checks the key is still
live (engine/keys.py), so revoking the key ends its sessions. Changing API_TOKEN logs every
browser out. Cookie-authenticated requests that change state must also carry `X-Requested-With` (a
header a cross-site form cannot send), on top of SameSite=Strict.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

COOKIE_NAME = "we_session"
MAX_AGE_S = 7 * 24 * 3600
CSRF_HEADER = "x-requested-with"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _sign(token: str, issued: str, key_id: str | None) -> str:
    message = f"session:{issued}" if key_id is None else f"session:{issued}:{key_id}"
    return hmac.new(token.encode(), message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Session:
    key_id: str | None
    """The named key logged in with; None for the API token."""


def make_session(token: str, *, key_id: str | None = None, now: float | None = None) -> str:
    """A new cookie value for a browser that just proved it knows `token` (or the named key
    `key_id`: the cookie is still signed with `token`, which only the server knows)."""
    issued = str(int(now if now is not None else time.time()))
    value = f"{issued}.{_sign(token, issued, key_id)}"
    return value if key_id is None else f"{value}.{key_id}"


def read_session(token: str, value: str | None, *, now: float | None = None) -> Session | None:
    """The session `value` holds if `make_session(token, ...)` made it less than MAX_AGE_S ago."""
    if not value:
        return None
    issued, _, rest = value.partition(".")
    signature, _, key_id = rest.partition(".")
    if not issued.isdigit() or not signature:
        return None
    age = (now if now is not None else time.time()) - int(issued)
    if age < -60 or age > MAX_AGE_S:
        return None
    expected = _sign(token, issued, key_id or None)
    if not secrets.compare_digest(signature.encode(), expected.encode()):
        return None
    return Session(key_id or None)


def session_valid(token: str, value: str | None, *, now: float | None = None) -> bool:
    """Whether `value` is a session `make_session(token, ...)` made less than MAX_AGE_S ago."""
    return read_session(token, value, now=now) is not None


def cookie_from_header(header: str | None) -> str | None:
    """Our session cookie's value from a raw `Cookie` header."""
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE_NAME)
    return morsel.value if morsel is not None else None


def csrf_ok(method: str, headers: Mapping[str, str]) -> bool:
    """A cookie-authenticated request may change state only when it proves it came from our page:
    the custom header (cross-site requests cannot set it without a CORS preflight we refuse),
    and, when the browser sends one, an Origin that matches the Host."""
    if method.upper() in SAFE_METHODS:
        return True
    if not headers.get(CSRF_HEADER):
        return False
    origin = headers.get("origin")
    if origin:
        return origin != "null" and origin.split("://", 1)[-1] == headers.get("host", "")
    return True
