"""Signed webhooks (DESIGN.md section 14): is a call to `POST /api/hooks/{path}` its trigger's?

Pure: no I/O. A call is authentic when it carries `X-Signature-256: sha256=<hex HMAC-SHA256 of
the raw body, keyed by the secret>` or `Authorization: Bearer <secret>`. Every comparison is
constant-time (`hmac.compare_digest`), so the time an answer takes says nothing about how much
of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Signature-256"
SCHEME = "sha256="


def signature(secret: str, body: bytes) -> str:
    """What `X-Signature-256` says for `body`: `sha256=` and the hex HMAC-SHA256."""
    return SCHEME + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    # Bytes: compare_digest refuses str with characters outside ASCII (a header may hold any).
    return hmac.compare_digest(given.encode(), expected.encode())


def authentic(secret: str, body: bytes, *, signed: str | None, bearer: str | None) -> bool:
    """Whether the call's signature header (`signed`) or bearer credential proves `secret`.
    Both are checked when both are sent (no early exit that would time either)."""
    by_signature = signed is not None and _same(signed.strip().lower(), signature(secret, body))
    by_bearer = bearer is not None and _same(bearer, secret)
    return by_signature or by_bearer
