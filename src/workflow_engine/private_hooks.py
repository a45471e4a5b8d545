"""Checks that the private parts of other libraries we override still look as we expect.

Two speed tricks lean on internals no library promises to keep: `queue/bullmq.py` overrides
bullmq's worker loop (`_LeanWorker`), and `storage/sqlite_inline.py` hands SQLAlchemy's aiosqlite
adapter a connection that imitates what the adapter reaches into. Both libraries are pinned
exactly in pyproject.toml; an upgrade that removes or reshapes one of those internals would
otherwise break quietly (a slower worker, a connection that never commits) or late (an
AttributeError mid-run). `check` looks at each one with `inspect` when the engine starts and
raises `ConfigurationError` naming the library, its version and what is missing or changed.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from workflow_engine.errors import ConfigurationError


@dataclass(frozen=True)
class Hook:
    """One attribute of another library that our code overrides or relies on.

    `params`: its parameter names, in order, when our override must keep the signature.
    `uses`: text its source must contain: what we rely on it doing (e.g. which method it calls,
    so that our override of that method is reached at all).
    """

    owner: type
    name: str
    params: tuple[str, ...] | None = None
    uses: tuple[str, ...] = ()


@dataclass(frozen=True)
class CallsOn:
    """Every `<via>.<name>` in `owner`'s source must be something `provider` (our stand-in: an
    instance, so that attributes set in `__init__` count) has, apart from `unused` (calls on code
    paths we never take)."""

    owner: type
    via: str
    provider: object
    unused: frozenset[str] = frozenset()


def version(library: str) -> str:
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def _where(owner: type, name: str) -> str:
    return f"{owner.__module__}.{owner.__qualname__}.{name}"


def _function(value: Any) -> Callable[..., Any] | None:
    """The function behind a class attribute (a property's setter when it has one)."""
    if isinstance(value, property):
        return value.fset or value.fget
    if isinstance(value, staticmethod | classmethod):
        return value.__func__
    return value if callable(value) else None


def _source(target: Any) -> str | None:
    try:
        return inspect.getsource(target)
    except (OSError, TypeError):
        return None


def _hook_problems(hook: Hook) -> list[str]:
    where = _where(hook.owner, hook.name)
    try:
        value = inspect.getattr_static(hook.owner, hook.name)
    except AttributeError:
        return [f"{where} is missing"]
    function = _function(value)
    if function is None:
        return [f"{where} is no longer a function or property"]
    problems = []
    if hook.params is not None:
        try:
            found = tuple(inspect.signature(function).parameters)
        except (TypeError, ValueError):
            found = ()
        if found != hook.params:
            problems.append(
                f"{where} has the signature ({', '.join(found)}), "
                f"expected ({', '.join(hook.params)})"
            )
    if hook.uses:
        source = _source(function)
        if source is None:
            problems.append(f"{where}: its source cannot be read to check it")
        else:
            problems.extend(
                f"{where} no longer contains `{text}`" for text in hook.uses if text not in source
            )
    return problems


def _calls_problems(calls: CallsOn) -> list[str]:
    source = _source(calls.owner)
    where = f"{calls.owner.__module__}.{calls.owner.__qualname__}"
    if source is None:
        return [f"{where}: its source cannot be read to check it"]
    used = set(re.findall(re.escape(calls.via) + r"\.(\w+)", source)) - calls.unused
    missing = sorted(name for name in used if not hasattr(calls.provider, name))
    return [
        f"{where} now uses `{calls.via}.{name}`, which {type(calls.provider).__qualname__} "
        "does not provide"
        for name in missing
    ]


def check(library: str, hooks: Iterable[Hook | CallsOn], *, used_by: str) -> None:
    """Raise ConfigurationError listing every hook of `library` that is missing or changed."""
    problems: list[str] = []
    for hook in hooks:
        problems.extend(_hook_problems(hook) if isinstance(hook, Hook) else _calls_problems(hook))
    if problems:
        raise ConfigurationError(
            f"{library} {version(library)} does not have the private hooks {used_by} overrides: "
            + "; ".join(problems)
            + f". Install the {library} version pinned in pyproject.toml, or update {used_by} "
            "and the hooks it declares for this version."
        )


# SQLAlchemy's aiosqlite adapter, as storage/sqlite_inline.py imitates it. Declared here rather
# than in storage/ while that package is being reworked; it belongs next to sqlite_inline.py.
def check_sqlalchemy_sqlite() -> None:
    """The attributes of aiosqlite's Connection and Cursor that SQLAlchemy's adapter reaches
    into are the ones `InlineConnection` and its cursor provide."""
    from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection, AsyncAdapt_dbapi_cursor
    from sqlalchemy.dialects.sqlite import aiosqlite as adapter

    from workflow_engine.storage import sqlite_inline

    connection = adapter.AsyncAdapt_aiosqlite_connection
    memory = sqlite3.connect(":memory:")
    ours = sqlite_inline.InlineConnection(memory)
    hooks: list[Hook | CallsOn] = [
        # Sets the isolation level through aiosqlite's request queue and its sqlite3 connection.
        Hook(
            connection, "isolation_level", uses=("_connection._tx.put_nowait", "_connection._conn")
        ),
        Hook(connection, "commit", uses=("self._connection._connection",)),
        Hook(connection, "rollback", uses=("self._connection._connection",)),
        Hook(connection, "create_function", uses=("self._connection.create_function",)),
        Hook(connection, "close", uses=("self._connection.close()",)),
        Hook(connection, "_terminate_force_close", uses=("self._connection.stop",)),
        # Our `async_creator` reaches the adapter through this keyword.
        Hook(adapter.AsyncAdapt_aiosqlite_dbapi, "connect", uses=("async_creator_fn",)),
        CallsOn(
            AsyncAdapt_dbapi_cursor,
            "self._cursor",
            sqlite_inline._Cursor(memory.cursor()),
            # nextset and setinputsizes: DB-API calls SQLAlchemy never makes on SQLite.
            unused=frozenset({"nextset", "setinputsizes"}),
        ),
        CallsOn(connection, "self._connection", ours),
        CallsOn(AsyncAdapt_dbapi_connection, "self._connection", ours),
    ]
    try:
        check("sqlalchemy", hooks, used_by="storage/sqlite_inline.py")
    finally:
        ours.stop()
