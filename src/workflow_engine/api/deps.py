"""Request-scoped access to the engine built at start-up, and the parameters routes share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request

from workflow_engine.bootstrap import Engine
from workflow_engine.storage.pagination import Cursor


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]

# Ids are 36 characters and names at most 200; no id or name holds a control character (and
# PostgreSQL could not even compare one with NUL), so such a value is refused before a query.
_ID_OR_NAME = r"^[^\x00-\x1f\x7f]+$"

WorkflowRef = Annotated[
    str,
    Path(
        min_length=1,
        max_length=200,
        pattern=_ID_OR_NAME,
        description="The workflow's id or its name",
    ),
]
ExecutionId = Annotated[str, Path(min_length=1, max_length=200, pattern=_ID_OR_NAME)]
TriggerId = Annotated[str, Path(min_length=1, max_length=200, pattern=_ID_OR_NAME)]
WorkflowFilter = Annotated[
    str | None,
    Query(max_length=200, pattern=_ID_OR_NAME, description="Only this workflow's (id or name)"),
]
CursorParam = Annotated[
    str | None,
    Query(description="The `nextCursor` of the previous page"),
]
Limit = Annotated[int, Query(ge=1, le=200, description="Items per page")]


def parse_cursor(cursor: str | None) -> Cursor | None:
    if not cursor:
        return None
    try:
        return Cursor.decode(cursor)
    except ValueError:
        raise HTTPException(400, "invalid cursor: pass the nextCursor of a previous page") from None
