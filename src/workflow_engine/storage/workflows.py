"""Queries on workflows, versions, their steps and triggers. Each function takes a connection."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.domain.definition import (
    EventTrigger,
    TriggerDefinition,
    WebhookTrigger,
    WorkflowDefinition,
)
from workflow_engine.errors import Conflict, DuplicateKey, InvalidDefinition, NotFound
from workflow_engine.ids import looks_like_id, new_id
from workflow_engine.storage.db import translated_errors
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
    # Its webhook paths are freed for other workflows (the config keeps what it was).
    await conn.execute(
        update(triggers)
        .where(triggers.c.workflow_id == workflow_id)
        .values(enabled=False, hook_path=None)
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
    # exclude_none: a webhook without a path keeps the config it always had (`{}`).
    config = definition.model_dump(mode="json", exclude={"type", "enabled"}, exclude_none=True)
    return {
        "type": definition.type,
        "config": config,
        "enabled": definition.enabled,
        "event_name": definition.event if isinstance(definition, EventTrigger) else None,
        "hook_path": definition.path if isinstance(definition, WebhookTrigger) else None,
    }


async def _check_hook_paths(
    conn: AsyncConnection, workflow_id: str, definitions: list[TriggerDefinition]
) -> None:
    """InvalidDefinition, naming it, if another workflow already serves one of their webhook
    paths. The unique index catches the rest: a path taken by a trigger of the same workflow,
    or by another workflow saved at the same time."""
    paths = [d.path for d in definitions if isinstance(d, WebhookTrigger) and d.path]
    if not paths:
        return
    taken = (
        await conn.execute(
            select(triggers.c.hook_path, workflows.c.name)
            .join(workflows, workflows.c.id == triggers.c.workflow_id)
            .where(triggers.c.hook_path.in_(paths), triggers.c.workflow_id != workflow_id)
        )
    ).first()
    if taken is not None:
        raise _path_taken(taken[0], taken[1])


def _path_taken(path: str, workflow_name: str | None = None) -> InvalidDefinition:
    by = f" by the workflow {workflow_name!r}" if workflow_name else ""
    return InvalidDefinition(
        f"webhook path {path!r} is already used{by}; each path serves one workflow"
    )


async def _write_trigger(conn: AsyncConnection, statement: Any, hook_path: str | None) -> None:
    """Insert or update a trigger; a webhook path taken meanwhile (the unique index) is an
    InvalidDefinition, and the transaction is rolled back by the raise."""
    try:
        with translated_errors():
            await conn.execute(statement)
    except DuplicateKey as exc:
        if hook_path:
            raise _path_taken(hook_path) from exc
        raise


async def replace_triggers(
    conn: AsyncConnection, workflow_id: str, definitions: list[TriggerDefinition]
) -> bool:
    """Make the workflow's triggers those of the document; unchanged ones keep their ids.
    Whether anything changed."""
    wanted = [trigger_values(d) for d in definitions]
    current = await list_triggers(conn, workflow_id)
    have = [{"type": t["type"], "config": t["config"], "enabled": t["enabled"]} for t in current]
    if have == [{k: w[k] for k in ("type", "config", "enabled")} for w in wanted]:
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
    await _check_hook_paths(conn, workflow_id, [definition])
    values = trigger_values(definition)
    statement = triggers.insert().values(
        id=trigger_id, workflow_id=workflow_id, created_at=now, updated_at=now, **values
    )
    await _write_trigger(conn, statement, values["hook_path"])
    return trigger_id


async def update_trigger(
    conn: AsyncConnection, workflow_id: str, trigger_id: str, definition: TriggerDefinition
) -> None:
    await _check_hook_paths(conn, workflow_id, [definition])
    values = trigger_values(definition)
    statement = (
        update(triggers).where(triggers.c.id == trigger_id).values(updated_at=_now(), **values)
    )
    await _write_trigger(conn, statement, values["hook_path"])


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


async def hook_trigger(conn: AsyncConnection, path: str) -> RowMapping | None:
    """The webhook trigger serving `/api/hooks/{path}` (a live workflow's), or None."""
    query = select(triggers).where(triggers.c.hook_path == path, triggers.c.type == "webhook")
    return (await conn.execute(query)).mappings().first()


async def event_triggers(conn: AsyncConnection, event_name: str) -> list[RowMapping]:
    """The enabled `event` triggers listening to `event_name`, of live workflows that have a
    version, with the workflow's `active_version_id`."""
    query = (
        select(triggers, workflows.c.active_version_id)
        .join(workflows, workflows.c.id == triggers.c.workflow_id)
        .where(
            triggers.c.event_name == event_name,
            triggers.c.type == "event",
            triggers.c.enabled.is_(True),
            workflows.c.archived_at.is_(None),
            workflows.c.active_version_id.is_not(None),
        )
        .order_by(triggers.c.created_at, triggers.c.id)
    )
    return list((await conn.execute(query)).mappings())
