"""The bootstrap API token: given (API_TOKEN), or generated once and kept in DATA_DIR/api-token.

It is the admin key that always works; named keys (engine/keys.py) are checked beside it
(api/access.py)."""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path

from workflow_engine.errors import ConfigurationError
from workflow_engine.settings import Settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(settings: Settings) -> tuple[str | None, bool]:
    """The API token, and whether it was generated just now.

    API_TOKEN wins; otherwise a token kept in DATA_DIR/api-token, made on first start. Disabling
    auth (AUTH_DISABLED=true) is refused unless the server binds to loopback only.
    """
    if settings.auth_disabled:
        if not is_loopback(settings.host):
            raise ConfigurationError(
                f"AUTH_DISABLED is refused when binding to {settings.host}: anyone on the network "
                "could run workflows; bind HOST to 127.0.0.1 or set API_TOKEN"
            )
        return None, False
    if settings.api_token:
        return settings.api_token, False
    path: Path = settings.token_file
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token, False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token, True
