"""The audit log (admin only): who changed what, newest first."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from workflow_engine.api import serialize
from workflow_engine.api.deps import CursorParam, EngineDep, Limit, parse_cursor
from workflow_engine.api.errors import responses
from workflow_engine.api.permissions import ADMIN
from workflow_engine.api.routes import api_router
from workflow_engine.api.schemas import AuditList
from workflow_engine.domain.audit import Target
from workflow_engine.storage import audit

router = api_router("audit")
TargetId = Annotated[
    str | None, Query(max_length=36, pattern=r"^[0-9A-Za-z-]+$", description="Its id")
]
ActorName = Annotated[
    str | None, Query(max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$", description="Its actor")
]


@router.get("/audit", response_model=AuditList, responses=responses(400), dependencies=[ADMIN])
async def list_audit(
    engine: EngineDep,
    targetType: Target | None = None,
    targetId: TargetId = None,
    actor: ActorName = None,
    limit: Limit = 50,
    cursor: CursorParam = None,
) -> Any:
    """Changes newest first: to workflows and their triggers, executions (cancel, re-run) and
    keys; filter by target (`targetType`, `targetId`) or by `actor`."""
    async with engine.db.read() as conn:
        rows = await audit.list_entries(
            conn,
            target_type=targetType.value if targetType else None,
            target_id=targetId,
            actor=actor,
            limit=limit,
            cursor=parse_cursor(cursor),
        )
    next_cursor = audit.cursor_after(rows[-1]).encode() if len(rows) == limit else None
    return {"entries": [serialize.audit(r) for r in rows], "nextCursor": next_cursor}
