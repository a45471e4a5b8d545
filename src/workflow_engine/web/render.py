"""Templates, the filters they use (times and durations a person reads at a glance), and the
login check every page makes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from workflow_engine.api.access import Gate
from workflow_engine.api.session import COOKIE_NAME
from workflow_engine.domain.access import Permission, Principal
from workflow_engine.domain.audit import summary as audit_summary
from workflow_engine.domain.status import ExecutionStatus

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
STATUSES = tuple(status.value for status in ExecutionStatus)


def duration(ms: int | None) -> str:
    """350 ms, 1.2 s, 2 min 5 s, 1 h 3 min: the unit a person expects for the size."""
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 10_000:
        return f"{ms / 1000:.1f} s"
    seconds = ms // 1000
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def relative(value: datetime | None, now: datetime | None = None) -> str:
    """'just now', '5 min ago', '3 h ago', '2 d ago' (the page's script keeps it fresh)."""
    if value is None:
        return "—"
    seconds = int(((now or datetime.now(UTC)) - value).total_seconds())
    if seconds < 0:
        return "in the future"
    if seconds < 10:
        return "just now"
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86_400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86_400} d ago"


def absolute(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def iso(value: datetime | None) -> str:
    return value.isoformat().replace("+00:00", "Z") if value else ""


# Ids are UUIDv7: the first 12 hex digits are the creation time in milliseconds, so a prefix reads
# the same for every row created within a minute. The tail is random: people tell rows apart by it.
SHORT_ID_CHARS = 8


def short_id(value: str | None) -> str:
    """'…e7da6f21' for '01a22bf8-e83f-7e35-b592-c7a5e7da6f21': the id's random tail (static/app.js
    `WE.shortId` says the same in the browser)."""
    if not value:
        return ""
    return value if len(value) <= SHORT_ID_CHARS else "…" + value[-SHORT_ID_CHARS:]


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


templates.env.filters.update(
    duration=duration, relative=relative, absolute=absolute, iso=iso, short_id=short_id
)
templates.env.filters["pretty"] = pretty
templates.env.filters["audit_summary"] = lambda row: audit_summary(
    row["action"], row["actor"], row["detail"]
)


class LoginRequired(Exception):
    """A page was asked for without a valid session: the browser goes to the login page."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


async def require_login(request: Request) -> Principal:
    """FastAPI dependency for every page: who is logged in (their key still live), or the
    browser goes to the login page."""
    gate: Gate = request.app.state.gate
    principal = await gate.session(request.cookies.get(COOKIE_NAME))
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    request.state.principal = principal
    return principal


def install(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _to_login(_: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.next_url, safe='/')}", status_code=303)


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    context.setdefault("statuses", STATUSES)
    if name != "login.html":
        context.setdefault("nav", "")
    context["auth_enabled"] = request.app.state.token is not None
    principal: Principal | None = getattr(request.state, "principal", None)
    context["principal"] = principal
    # What the logged-in key may do: the pages leave out the actions it may not.
    context["can"] = {p.value: principal is not None and principal.can(p) for p in Permission}
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def forbidden(request: Request, principal: Principal) -> Response:
    """The page a key whose role may not read gets instead of a page that shows data."""
    return page(request, "forbidden.html", status_code=403, who=principal)
