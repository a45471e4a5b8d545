"""Login and logout: the browser proves once that it holds a key (the API token or a named key)
and gets a session cookie naming that key."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from workflow_engine.api.access import Gate
from workflow_engine.api.session import COOKIE_NAME, MAX_AGE_S
from workflow_engine.web.render import page

router = APIRouter(include_in_schema=False)
HOME = "/monitoring"


def _safe_next(value: str | None) -> str:
    """Only a path on this site: an open redirect would make the login page a phishing aid."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return HOME
    return value


@router.get("/")
async def home() -> Response:
    return RedirectResponse(HOME, status_code=303)


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    if request.app.state.token is None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return page(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    gate: Gate = request.app.state.gate
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    given = form.get("token", [""])[0].strip()
    target = _safe_next(form.get("next", [None])[0])
    if not gate.enabled:
        return RedirectResponse(target, status_code=303)
    principal = await gate.key(given) if given else None
    if principal is None:
        return page(
            request,
            "login.html",
            status_code=401,
            next=target,
            error="That key is not valid (or it was revoked). Use an API key, the API_TOKEN, "
            "or the token in DATA_DIR/api-token.",
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE_NAME,
        gate.session_cookie(principal),
        max_age=MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return response
