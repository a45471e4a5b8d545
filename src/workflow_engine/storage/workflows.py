"""Queries on workflows, versions, their steps and triggers. Each function takes a connection."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.domain.definition import TriggerDefinition, WorkflowDefinition
from workflow_engine.errors import Conflict, NotFound
from workflow_engine.ids import looks_like_id, new_id
from workflow_engine.storage.pagination import Cursor, keyset_before
from workflow_engine.storage.tables import triggers, workflow_steps, workflow_versions, workflows


def _now() -> datetime:
    return datetime.now(UTC)


async def get_workflow(conn: AsyncConnection, id_or_name: str) -> RowMapping:
    """A live or archived workflow by id, or a live one by its unique name."""
    column = workflows.c.id if looks_like_id(id_or_name) else workflows.c.name
    query = select(workflows).where(column == id_or_name)
    if column is workflows.c.name:
        query = query.where(workflows.c.archived_at.is_(None))
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"workflow {id_or_name!r} not found")
    return row


async def list_workflows(
    conn: AsyncConnection, *, limit: int, cursor: Cursor | None, include_archived: bool
) -> list[RowMapping]:
    query = select(workflows)
    if not include_archived:
        query = query.where(workflows.c.archived_at.is_(None))
    if cursor:
        query = query.where(keyset_before(workflows.c.created_at, workflows.c.id, cursor))
    query = query.order_by(workflows.c.created_at.desc(), workflows.c.id.desc()).limit(limit)
    return list((await conn.execute(query)).mappings())


async def workflow_names(conn: AsyncConnection, ids: set[str] | None = None) -> dict[str, str]:
    """{id: name} of the workflows `ids` (archived ones too), or of every live workflow by
    name when `ids` is None."""
    query = select(workflows.c.id, workflows.c.name)
    if ids is not None:
        if not ids:
            return {}
        query = query.where(workflows.c.id.in_(ids))
    else:
        query = query.where(workflows.c.archived_at.is_(None)).order_by(workflows.c.name)
    return {row.id: row.name for row in await conn.execute(query)}


async def create_workflow(conn: AsyncConnection, definition: WorkflowDefinition) -> str:
    """Insert a workflow with its version 1; returns the workflow id. 409 on a taken name."""
    now = _now()
    workflow_id = new_id()
    try:
        await conn.execute(
            workflows.insert().values(
                id=workflow_id,
                name=definition.name,
                description=definition.description,
                created_at=now,
                updated_at=now,
            )
        )
    except IntegrityError as exc:
        raise Conflict(f"a workflow named {definition.name!r} already exists") from exc
    await add_version(conn, workflow_id, definition)
    await replace_triggers(conn, workflow_id, definition.triggers or [])
    return workflow_id


async def add_version(
    conn: AsyncConnection, workflow_id: str, definition: WorkflowDefinition
) -> int:
    """Save `definition` as the workflow's next version and make it active; returns its number."""
    now = _now()
    current = await conn.scalar(
        select(func.max(workflow_versions.c.version)).where(
            workflow_versions.c.workflow_id == workflow_id
        )
    )
    number = (current or 0) + 1
    version_id = new_id()
    await conn.execute(
        workflow_versions.insert().values(
            id=version_id,
            workflow_id=workflow_id,
            version=number,
            definition=definition.document(),
            created_at=now,
        )
    )
    await conn.execute(
        workflow_steps.insert(),
        [
            {
                "id": new_id(),
                "workflow_version_id": version_id,
                "position": position,
                "key": step.key,
                "name": step.name,
                "type": step.type,
                "config": step.config,
            }
            for position, step in enumerate(definition.steps)
        ],
    )
    try:
        await conn.execute(
            update(workflows)
            .where(workflows.c.id == workflow_id)
            .values(
                name=definition.name,
                description=definition.description,
                active_version_id=version_id,
                updated_at=now,
            )
        )
    except IntegrityError as exc:
        raise Conflict(f"a workflow named {definition.name!r} already exists") from exc
    return number


async def archive_workflow(conn: AsyncConnection, workflow_id: str) -> None:
    now = _now()
    await conn.execute(
        update(workflows)
        .where(workflows.c.id == workflow_id, workflows.c.archived_at.is_(None))
        .values(archived_at=now, updated_at=now)
    )
    await conn.execute(
        update(triggers).where(triggers.c.workflow_id == workflow_id).values(enabled=False)
    )


async def list_versions(conn: AsyncConnection, workflow_id: str) -> list[RowMapping]:
    query = (
        select(workflow_versions)
        .where(workflow_versions.c.workflow_id == workflow_id)
        .order_by(workflow_versions.c.version.desc())
    )
    return list((await conn.execute(query)).mappings())


async def get_version(
    conn: AsyncConnection,
    *,
    version_id: str | None = None,
    workflow_id: str | None = None,
    number: int | None = None,
) -> RowMapping:
    query = select(workflow_versions)
    if version_id is not None:
        query = query.where(workflow_versions.c.id == version_id)
    else:
        query = query.where(
            workflow_versions.c.workflow_id == workflow_id, workflow_versions.c.version == number
        )
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"workflow version {version_id or number} not found")
    return row


async def version_step_ids(conn: AsyncConnection, version_id: str) -> dict[str, str]:
    """Map step key -> workflow_steps.id for one version."""
    rows = await conn.execute(
        select(workflow_steps.c.key, workflow_steps.c.id).where(
            workflow_steps.c.workflow_version_id == version_id
        )
    )
    return {key: step_id for key, step_id in rows}


# --- triggers ------------------------------------------------------------------------------------


def trigger_values(definition: TriggerDefinition) -> dict[str, Any]:
    config = definition.model_dump(mode="json", exclude={"type", "enabled"})
    return {"type": definition.type, "config": config, "enabled": definition.enabled}


async def replace_triggers(
    conn: AsyncConnection, workflow_id: str, definitions: list[TriggerDefinition]
) -> bool:
    """Make the workflow's triggers those of the document; unchanged ones keep their ids.
    Whether anything changed."""
    wanted = [trigger_values(d) for d in definitions]
    current = await list_triggers(conn, workflow_id)
    have = [{"type": t["type"], "config": t["config"], "enabled": t["enabled"]} for t in current]
    if have == wanted:
        return False
    await conn.execute(triggers.delete().where(triggers.c.workflow_id == workflow_id))
    for definition in definitions:
        await create_trigger(conn, workflow_id, definition)
    return True


async def create_trigger(
    conn: AsyncConnection, workflow_id: str, definition: TriggerDefinition
) -> str:
    now = _now()
    trigger_id = new_id()
    await conn.execute(
        triggers.insert().values(
            id=trigger_id,
            workflow_id=workflow_id,
            created_at=now,
            updated_at=now,
            **trigger_values(definition),
        )
    )
    return trigger_id


async def update_trigger(
    conn: AsyncConnection, trigger_id: str, definition: TriggerDefinition
) -> None:
    await conn.execute(
        update(triggers)
        .where(triggers.c.id == trigger_id)
        .values(updated_at=_now(), **trigger_values(definition))
    )


async def delete_trigger(conn: AsyncConnection, trigger_id: str) -> None:
    await conn.execute(triggers.delete().where(triggers.c.id == trigger_id))


async def get_trigger(conn: AsyncConnection, trigger_id: str) -> RowMapping:
    row = (
        (await conn.execute(select(triggers).where(triggers.c.id == trigger_id))).mappings().first()
    )
    if row is None:
        raise NotFound(f"trigger {trigger_id!r} not found")
    return row


async def list_triggers(conn: AsyncConnection, workflow_id: str) -> list[RowMapping]:
    query = (
        select(triggers)
        .where(triggers.c.workflow_id == workflow_id)
        .order_by(triggers.c.created_at, triggers.c.id)
    )
    return list((await conn.execute(query)).mappings())


async def enabled_schedules(conn: AsyncConnection) -> list[RowMapping]:
    """Enabled schedule triggers of live workflows."""
    query = (
        select(triggers)
        .join(workflows, workflows.c.id == triggers.c.workflow_id)
        .where(
            triggers.c.type == "schedule",
            triggers.c.enabled.is_(True),
            workflows.c.archived_at.is_(None),
            or_(workflows.c.active_version_id.is_not(None)),
        )
    )
    return list((await conn.execute(query)).mappings())
