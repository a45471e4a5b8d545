"""Signed webhooks: `POST /api/hooks/{path}` starts the workflow whose `webhook` trigger serves
that path, authenticated by the trigger's own secret (engine/hooks.py), never by an API key."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Header, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from workflow_engine.api import serialize
from workflow_engine.api.access import bearer_value
from workflow_engine.api.deps import EngineDep
from workflow_engine.api.errors import responses
from workflow_engine.api.jsonbody import parse_body
from workflow_engine.api.permissions import SIGNED
from workflow_engine.api.routes import api_router
from workflow_engine.api.schemas import ExecutionStarted, HookFinished
from workflow_engine.domain.definition import HOOK_PATH_PATTERN
from workflow_engine.domain.signatures import SIGNATURE_HEADER
from workflow_engine.engine.debounce import Held
from workflow_engine.engine.hooks import MAX_WAIT_MS, Call
from workflow_engine.errors import NotFound

# Signed, not keyed (api/middleware.py SIGNED_PREFIXES): the route documents its own answers.
router = api_router("hooks", open_routes=True)
_PATH = re.compile(HOOK_PATH_PATTERN)
BAD_WAIT = f"wait must be a whole number of milliseconds from 0 to {MAX_WAIT_MS}"


def wait_ms(value: str | None) -> int:
    """`?wait=` as milliseconds (0: answer at once); HTTPException 400 for anything else."""
    if value is None:
        return 0
    if not value.isascii() or not value.isdigit() or int(value) > MAX_WAIT_MS:
        raise HTTPException(400, BAD_WAIT)
    return int(value)


@router.post(
    "/hooks/{path}",
    status_code=202,
    response_model=ExecutionStarted,
    responses={
        200: {"model": HookFinished, "description": "`?wait=`: the execution ended in time"},
        **responses(400, 401, 404, 409, 413, 422, 503),
    },
    dependencies=[SIGNED],
)
async def call_hook(
    engine: EngineDep,
    request: Request,
    response: Response,
    path: Annotated[str, Path(description="The `path` of a `webhook` trigger")],
    wait: Annotated[
        str | None,
        Query(
            description=f"Milliseconds (at most {MAX_WAIT_MS}) to wait for the execution to "
            "end: 200 with its output if it did, else 202 as usual"
        ),
    ] = None,
    x_signature_256: Annotated[
        str | None,
        Header(
            alias=SIGNATURE_HEADER,
            description="`sha256=` and the hex HMAC-SHA256 of the raw body, keyed by the secret",
        ),
    ] = None,
    authorization: Annotated[
        str | None, Header(description="`Bearer <secret>`: the hook's secret itself")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="Repeating a key returns the execution it started",
        ),
    ] = None,
) -> Any:
    """Start the workflow of the `webhook` trigger serving `path`, with the JSON body as its
    input (an empty body: `{}`). Authenticated by the trigger's secret only: `X-Signature-256`
    or `Authorization: Bearer <secret>` (an API key is refused, 401). 404 if no live workflow
    serves `path`; 400 if the body is not JSON or `wait` is not 0 to 30000. A debounced
    trigger answers `{"debounced": true, "triggerId", "key", "fireAt"}` (202, `wait` unused)."""
    if not _PATH.fullmatch(path):
        raise NotFound(f"no webhook at /api/hooks/{path}")
    body = await request.body()
    call = Call(path, body, x_signature_256, bearer_value(authorization))
    trigger = await engine.hooks.authenticate(call)
    waiting_ms = wait_ms(wait)
    parsed = parse_body(body)
    started = await engine.hooks.start(
        trigger, parsed if parsed is not None else {}, idempotency_key=idempotency_key
    )
    if isinstance(started, Held):
        return JSONResponse(serialize.debounced(started), status_code=202)
    if not started.created:
        response.headers["Idempotent-Replayed"] = "true"
    if waiting_ms:
        ended = await engine.hooks.endings.wait(started.execution_id, waiting_ms / 1000)
        if ended is not None:
            response.status_code = 200
            return {
                "executionId": ended["id"],
                "status": ended["status"],
                "output": ended["output"],
                "error": ended["error"],
            }
    return {"executionId": started.execution_id, "status": started.status}
