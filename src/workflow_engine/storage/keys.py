"""Queries on API keys. Each function takes a connection; keys are found by their digest."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.errors import Conflict, DuplicateKey, NotFound
from workflow_engine.ids import looks_like_id, new_id
from workflow_engine.storage.db import translated_errors
from workflow_engine.storage.tables import api_keys


async def insert_key(
    conn: AsyncConnection,
    *,
    name: str,
    role: str,
    key_hash: str,
    prefix: str,
    workflows: list[str] | None,
) -> RowMapping:
    """Insert a live key (in a savepoint); Conflict when a live key has that name."""
    key_id = new_id()
    row = {
        "id": key_id,
        "name": name,
        "role": role,
        "key_hash": key_hash,
        "prefix": prefix,
        "workflows": workflows,
        "created_at": datetime.now(UTC),
    }
    try:
        with translated_errors():
            async with conn.begin_nested():
                await conn.execute(api_keys.insert().values(**row))
    except DuplicateKey as exc:
        raise Conflict(f"a key named {name!r} already exists; revoke it first") from exc
    return await get_key(conn, key_id)


async def get_key(conn: AsyncConnection, id_or_name: str) -> RowMapping:
    """A key by id (live or revoked), or a live key by name."""
    query = select(api_keys)
    if looks_like_id(id_or_name):
        query = query.where(api_keys.c.id == id_or_name)
    else:
        query = query.where(api_keys.c.name == id_or_name, api_keys.c.revoked_at.is_(None))
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"key {id_or_name!r} not found")
    return row


async def find_live_by_hash(conn: AsyncConnection, key_hash: str) -> RowMapping | None:
    query = select(api_keys).where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
    return (await conn.execute(query)).mappings().first()


async def find_live_by_id(conn: AsyncConnection, key_id: str) -> RowMapping | None:
    query = select(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
    return (await conn.execute(query)).mappings().first()


async def list_keys(conn: AsyncConnection) -> list[RowMapping]:
    """Every key, revoked ones too, newest first (a deployment has tens, not thousands)."""
    query = select(api_keys).order_by(api_keys.c.created_at.desc(), api_keys.c.id.desc())
    return list((await conn.execute(query)).mappings())


async def revoke_key(conn: AsyncConnection, key_id: str) -> bool:
    """Revoke a live key; False when it was revoked already."""
    result = await conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return bool(result.rowcount)


async def touch_key(conn: AsyncConnection, key_id: str, when: datetime) -> None:
    """Record a use of the key (callers do it at most once a minute per key)."""
    await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=when))
