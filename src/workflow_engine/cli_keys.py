"""`workflow-engine keys create|list|revoke`: named API keys, managed on the database directly
(DATABASE_URL, like `migrate`), so the first admin key needs no running server.

`create` prints the key alone on stdout (`KEY=$(workflow-engine keys create ...)`) and what it
is on stderr; the key is never shown again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer

from workflow_engine.domain.access import CLI, Role
from workflow_engine.engine.keys import KeyRing
from workflow_engine.errors import ConfigurationError, WorkflowEngineError
from workflow_engine.settings import Settings

T = TypeVar("T")
app = typer.Typer(
    help="Named API keys with a role (admin, operator, viewer, trigger).",
    no_args_is_help=True,
)


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _run(action: Callable[[KeyRing], Awaitable[T]]) -> T:
    """Run `action` on the keys of the configured database (migrated first, as `serve` does)."""
    from pydantic import ValidationError

    from workflow_engine import bootstrap
    from workflow_engine.storage import migrate
    from workflow_engine.storage.db import Database

    try:
        settings = Settings()
    except ValidationError as exc:
        _fail(f"Invalid configuration: {exc}", 2)
        raise

    async def run() -> T:
        db = Database(settings.resolved_database_url)
        ring = bootstrap.key_ring(settings, db)
        try:
            await migrate.upgrade(db)
            return await action(ring)
        finally:
            await ring.close()
            await db.dispose()

    try:
        return asyncio.run(run())
    except ConfigurationError as exc:
        _fail(str(exc), 2)
    except WorkflowEngineError as exc:  # a bad name, a taken name, no such key...
        _fail(exc.message)
    raise AssertionError("unreachable")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="Unique among live keys")],
    role: Annotated[Role, typer.Option("--role", help="What the key may do")],
    workflow: Annotated[
        list[str] | None,
        typer.Option("--workflow", help="trigger keys: a workflow (id or name) it may execute"),
    ] = None,
) -> None:
    """Create a key and print it (once: only its SHA-256 is stored)."""
    created = _run(lambda ring: ring.create(name=name, role=role, workflows=workflow, actor=CLI))
    row = created.row
    typer.echo(f"Created key {row['name']!r} ({row['role']}), id {row['id']}", err=True)
    if row["workflows"]:
        typer.echo(f"It may execute: {', '.join(row['workflows'])}", err=True)
    typer.echo("Store it now: it is not shown again.", err=True)
    typer.echo(created.key)


@app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array")] = False,
) -> None:
    """Every key (revoked ones too), without secrets."""
    rows = _run(lambda ring: ring.list_keys())
    if as_json:
        from workflow_engine.api.serialize import key

        typer.echo(json.dumps([key(row) for row in rows], indent=2))
        return
    if not rows:
        typer.echo("No keys yet: workflow-engine keys create --name NAME --role ROLE")
        return
    table: list[tuple[Any, ...]] = [
        ("NAME", "ROLE", "PREFIX", "CREATED", "LAST USED", "REVOKED", "ID", "WORKFLOWS")
    ]
    for row in rows:
        table.append(
            (
                row["name"],
                row["role"],
                row["prefix"] + "…",
                _when(row["created_at"]),
                _when(row["last_used_at"]),
                _when(row["revoked_at"]),
                row["id"],
                ",".join(row["workflows"] or []) or "-",
            )
        )
    widths = [max(len(str(line[i])) for line in table) for i in range(len(table[0]))]
    for line in table:
        typer.echo("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


@app.command("revoke")
def revoke(
    key: Annotated[str, typer.Argument(help="The key's id, or a live key's name")],
) -> None:
    """Revoke a key: the API refuses it from then on (see API_KEY_CACHE_MS in the README)."""
    row = _run(lambda ring: ring.revoke(key, actor=CLI))
    typer.echo(f"Revoked key {row['name']!r} ({row['role']}), id {row['id']}")
