"""The UI's login session: a cookie derived from the API token, never the token itself.

The cookie holds `<issued-at>.<HMAC-SHA256(token, issued-at)>`: anyone holding it can prove they
logged in with the token, but cannot recover the token. Changing API_TOKEN logs every browser
out. Cookie-authenticated requests that change state must also carry `X-Requested-With` (a
header a cross-site form cannot send), on top of SameSite=Strict.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie

COOKIE_NAME = "we_session"
MAX_AGE_S = 7 * 24 * 3600
CSRF_HEADER = "x-requested-with"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _sign(token: str, issued: str) -> str:
    return hmac.new(token.encode(), f"session:{issued}".encode(), hashlib.sha256).hexdigest()


def make_session(token: str, *, now: float | None = None) -> str:
    """A new cookie value for a browser that just proved it knows `token`."""
    issued = str(int(now if now is not None else time.time()))
    return f"{issued}.{_sign(token, issued)}"


def session_valid(token: str, value: str | None, *, now: float | None = None) -> bool:
    """Whether `value` was made by `make_session(token)` less than MAX_AGE_S ago."""
    if not value:
        return False
    issued, _, signature = value.partition(".")
    if not issued.isdigit() or not signature:
        return False
    age = (now if now is not None else time.time()) - int(issued)
    if age < -60 or age > MAX_AGE_S:
        return False
    return secrets.compare_digest(signature, _sign(token, issued))


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


def request_has_session(token: str, headers: Mapping[str, str]) -> bool:
    """`headers` are lower-cased request headers."""
    return session_valid(token, cookie_from_header(headers.get("cookie")))


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
