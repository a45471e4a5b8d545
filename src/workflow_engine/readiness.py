"""Readiness: whether this process can do its work now (`GET /api/ready`), as opposed to being
alive (`GET /api/health`). Each dependency is probed at once, each within a short timeout, so a
probe never hangs on a database or a Redis that does not answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from workflow_engine.errors import StorageError
from workflow_engine.storage.db import Database

Probe = Callable[[], Awaitable[None]]
"""Returns when the dependency answers; raises (anything) when it does not."""

TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, str]
    """Each probe's name -> "ok", or why it failed."""

    @property
    def ready(self) -> bool:
        return all(result == "ok" for result in self.checks.values())

    @property
    def reason(self) -> str:
        """The failed probes, one `name: why` each, joined by `; ` (empty when ready)."""
        return "; ".join(f"{name}: {why}" for name, why in self.checks.items() if why != "ok")


def database_probe(db: Database) -> Probe:
    return db.ping


async def check(probes: Mapping[str, Probe], *, timeout_s: float = TIMEOUT_S) -> Readiness:
    """Run every probe concurrently, each bounded by `timeout_s`."""

    async def run(probe: Probe) -> str:
        try:
            async with asyncio.timeout(timeout_s):
                await probe()
        except TimeoutError:
            return f"no answer within {timeout_s:g} s"
        except Exception as exc:
            return _describe(exc)
        return "ok"

    names = list(probes)
    results = await asyncio.gather(*(run(probes[name]) for name in names))
    return Readiness(dict(zip(names, results, strict=True)))


def _describe(exc: BaseException) -> str:
    """One short line: the driver's own error rather than its wrappings (the engine's
    StorageUnavailable, SQLAlchemy's DBAPIError and its `orig`)."""
    for _ in range(5):
        inner = getattr(exc, "orig", None) or (
            exc.__cause__ if isinstance(exc, StorageError) else None
        )
        if not isinstance(inner, BaseException):
            break
        exc = inner
    text_ = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    line = f"{type(exc).__name__}: {text_}" if text_ else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."
