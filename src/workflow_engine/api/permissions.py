"""Every `/api` route declares the permission it needs, as a dependency; nothing is implied.

    @router.get("/workflows", dependencies=[READ])
    async def list_workflows(...): ...

    @router.put("/workflows/{workflow_id}", dependencies=[ADMIN])
    async def update_workflow(..., caller: Caller): ...   # caller.actor for the audit log

`check_routes(app)` runs when the app is made: an `/api` route without a declared permission
stops the app from being built, so a new route cannot be left open by mistake (and
tests/unit/test_route_permissions.py walks the routes too). Authentication itself (who the
caller is) happens before any route, in api/middleware.py; except on `SIGNED` routes (signed
webhooks), which the guard lets through without a key and which check each call's signature
themselves.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute, iter_route_contexts

from workflow_engine.domain.access import Permission, Principal, Role
from workflow_engine.errors import NotFound
from workflow_engine.storage import workflows as wf_store

_WHAT = {
    Permission.READ: "read anything",
    Permission.EXECUTE: "start executions",
    Permission.OPERATE: "cancel or re-run executions, fire triggers or approve steps",
    Permission.ADMIN: "change workflows, triggers or keys, or read the audit log",
}


def _forbidden(message: str) -> HTTPException:
    return HTTPException(403, message)


class Requires:
    """A route's permission: checks the caller (set by the guard) and returns it."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    async def __call__(self, request: Request) -> Principal | None:
        if self.permission in (Permission.PUBLIC, Permission.SIGNED):
            return None  # SIGNED: the route checks the call's own signature (engine/hooks.py)
        principal = principal_of(request)
        if not principal.can(self.permission):
            raise _forbidden(
                f"the {principal.role} key {principal.name!r} may not {_WHAT[self.permission]}"
                if principal.role is not Role.TRIGGER
                else f"the trigger key {principal.name!r} may only start its workflows "
                "(POST /api/workflows/{id}/execute)"
            )
        if self.permission is Permission.EXECUTE and principal.workflows is not None:
            ref = str(request.path_params.get("workflow_id", ""))
            if ref not in principal.workflows and await _workflow_id(request, ref) not in (
                principal.workflows
            ):
                raise _forbidden(
                    f"the trigger key {principal.name!r} may not execute workflow {ref!r}: "
                    "it is not one of its workflows"
                )
        return principal

    def __repr__(self) -> str:
        return f"Requires({self.permission.value})"


async def _workflow_id(request: Request, ref: str) -> str | None:
    """The id of the workflow `ref` names (trigger keys list ids; a path may name it)."""
    if not ref:
        return None
    engine = request.app.state.engine
    async with engine.db.read() as conn:
        try:
            return str((await wf_store.get_workflow(conn, ref))["id"])
        except NotFound:
            return None


def principal_of(request: Request) -> Principal:
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:  # the guard runs before every /api route: this is a bug, not a client's
        raise HTTPException(401, "missing or invalid API key")
    return principal


PUBLIC: Any = Depends(Requires(Permission.PUBLIC))
SIGNED: Any = Depends(Requires(Permission.SIGNED))
READ: Any = Depends(Requires(Permission.READ))
EXECUTE: Any = Depends(Requires(Permission.EXECUTE))
OPERATE: Any = Depends(Requires(Permission.OPERATE))
ADMIN: Any = Depends(Requires(Permission.ADMIN))


async def _caller(request: Request) -> Principal:
    # A coroutine: FastAPI would run a plain function dependency in its thread pool, a thread
    # hop on every request that names its caller (execute among them).
    return principal_of(request)


Caller = Annotated[Principal, Depends(_caller)]
"""Who is asking, for the routes that record it (the audit log, `triggeredBy`)."""


def declared(route: APIRoute) -> list[Permission]:
    """The permissions `route` declares (one, for a well-made route)."""
    return [
        dependency.call.permission
        for dependency in route.dependant.dependencies
        if isinstance(dependency.call, Requires)
    ]


def api_routes(app: FastAPI) -> list[tuple[str, APIRoute]]:
    """Every route of the app under `/api/`, with its full path (included routers flattened)."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        path = context.path or ""
        if isinstance(route, APIRoute) and path.startswith("/api/"):
            found.append((path, route))
    return found


BEARER_AUTH = {
    "type": "http",
    "scheme": "bearer",
    "description": "The API token (API_TOKEN, or the one in DATA_DIR/api-token)",
}


def document_keys(app: FastAPI) -> None:
    """`/openapi.json` says which operations take an API key (`bearerAuth`): those whose
    permission is neither public nor signed. The guard (api/middleware.py) checks the key; the
    document follows the same declarations, rather than a security dependency run on every
    request to say so."""
    keyed = {
        (path, method.lower())
        for path, route in api_routes(app)
        for method in route.methods or ()
        if declared(route)[0] not in (Permission.PUBLIC, Permission.SIGNED)
    }
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        spec = app.openapi_schema
        if spec is None:
            spec = generate()  # kept as app.openapi_schema
            spec.setdefault("components", {}).setdefault("securitySchemes", {})["bearerAuth"] = (
                BEARER_AUTH
            )
            for path, operations in spec["paths"].items():
                for method, operation in operations.items():
                    if (path, method) in keyed:
                        operation["security"] = [{"bearerAuth": []}]
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def check_routes(
    app: FastAPI, open_paths: tuple[str, ...], signed_prefixes: tuple[str, ...] = ()
) -> None:
    """Refuse an app whose `/api` routes do not each declare exactly one permission, whose
    public routes are not the guard's `open_paths`, or whose signed routes (authenticated by
    their own secret) are not exactly those under the guard's `signed_prefixes`."""
    problems = []
    for path, route in api_routes(app):
        where = f"{','.join(sorted(route.methods or ()))} {path}"
        permissions = declared(route)
        if len(permissions) != 1:
            problems.append(f"{where} declares {len(permissions)} permissions, not one")
        elif (permissions[0] is Permission.PUBLIC) != (path in open_paths):
            problems.append(f"{where}: public routes and the guard's open paths differ")
        elif (permissions[0] is Permission.SIGNED) != path.startswith(signed_prefixes):
            problems.append(f"{where}: signed routes and the guard's signed prefixes differ")
    if problems:
        raise RuntimeError("routes without a proper permission: " + "; ".join(problems))
