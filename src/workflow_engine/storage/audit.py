"""The audit log: one row per change, written in the transaction that makes the change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.domain.access import Actor
from workflow_engine.ids import new_id
from workflow_engine.storage.pagination import Cursor, keyset_before
from workflow_engine.storage.tables import audit_log


async def record(
    conn: AsyncConnection,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str,
    detail: dict[str, Any] | None = None,
    *,
    at: datetime | None = None,
) -> None:
    await conn.execute(
        audit_log.insert().values(
            id=new_id(),
            at=at or datetime.now(UTC),
            actor=actor.name,
            actor_key_id=actor.key_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            detail=detail,
        )
    )


async def list_entries(
    conn: AsyncConnection,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    actor: str | None = None,
    limit: int,
    cursor: Cursor | None = None,
) -> list[RowMapping]:
    """Newest first, paged by keyset on (at, id)."""
    query = select(audit_log)
    if target_type is not None:
        query = query.where(audit_log.c.target_type == target_type)
    if target_id is not None:
        query = query.where(audit_log.c.target_id == target_id)
    if actor is not None:
        query = query.where(audit_log.c.actor == actor)
    if cursor is not None:
        query = query.where(keyset_before(audit_log.c.at, audit_log.c.id, cursor))
    query = query.order_by(audit_log.c.at.desc(), audit_log.c.id.desc()).limit(limit)
    return list((await conn.execute(query)).mappings())


async def entries_of(
    conn: AsyncConnection, target_type: str, target_id: str, *, limit: int = 200
) -> list[RowMapping]:
    """One target's entries, oldest first (as a page shows them under the thing)."""
    query = (
        select(audit_log)
        .where(audit_log.c.target_type == target_type, audit_log.c.target_id == target_id)
        .order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
        .limit(limit)
    )
    rows = list((await conn.execute(query)).mappings())
    rows.reverse()
    return rows


def cursor_after(row: RowMapping) -> Cursor:
    return Cursor(row["at"], row["id"])
