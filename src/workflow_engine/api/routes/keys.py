"""Named API keys (admin only): create (the key is shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Path

from workflow_engine.api import serialize
from workflow_engine.api.deps import EngineDep
from workflow_engine.api.errors import WRITE, responses
from workflow_engine.api.permissions import ADMIN, Caller
from workflow_engine.api.routes import api_router
from workflow_engine.api.schemas import ApiKey, CreatedKey, KeyList, KeyRequest

router = api_router("keys")
KeyRef = Annotated[
    str,
    Path(
        min_length=1,
        max_length=100,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="The key's id, or a live key's name",
    ),
]
NEW_KEY_EXAMPLE = {"name": "ci-deployer", "role": "trigger", "workflows": ["enrich-lead"]}


@router.post(
    "/keys",
    status_code=201,
    response_model=CreatedKey,
    responses={**WRITE, **responses(409)},
    dependencies=[ADMIN],
)
async def create_key(
    engine: EngineDep,
    caller: Caller,
    body: Annotated[
        KeyRequest,
        Body(openapi_examples={"trigger": {"summary": "A CI job", "value": NEW_KEY_EXAMPLE}}),
    ],
) -> Any:
    """A new key. Its secret (`key`) is in this answer only: the engine keeps its SHA-256."""
    created = await engine.keys.create(
        name=body.name, role=body.role, workflows=body.workflows, actor=caller.actor
    )
    return {**serialize.key(created.row), "key": created.key}


@router.get("/keys", response_model=KeyList, dependencies=[ADMIN])
async def list_keys(engine: EngineDep) -> Any:
    """Every key, without secrets: prefix, role, last use, revocation."""
    return {"keys": [serialize.key(row) for row in await engine.keys.list_keys()]}


@router.delete(
    "/keys/{key_id}", response_model=ApiKey, responses=responses(404), dependencies=[ADMIN]
)
async def revoke_key(engine: EngineDep, key_id: KeyRef, caller: Caller) -> Any:
    """Revoke a key (by id, or a live key by name): refused (401) from the next request on.
    Revoking a revoked key changes nothing."""
    row = await engine.keys.revoke(key_id, actor=caller.actor)
    return serialize.key(row)
