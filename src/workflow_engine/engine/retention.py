"""Retention: finished executions older than EXECUTION_RETENTION_DAYS are removed with their
steps, logs and events, in the background, or by hand with `workflow-engine prune`.

A pass goes through the old executions in small batches, one short transaction each, with a
pause in between, so that running executions' writes never wait long behind it (on SQLite the
embedded mode's writes and a batch take the same lock, in turn). What goes and what stays (child
executions, re-runs) is decided in `storage/retention.py`.

In the embedded mode `serve` runs the passes; in the distributed mode the `workers` process
that is the reconciler's leader of the moment (one at a time, elected in Redis) does.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from workflow_engine.storage import retention as store
from workflow_engine.storage.db import Database

log = logging.getLogger(__name__)
PAUSE_RATIO = 2.0
"""After each batch the pass waits this many times as long as the batch took (at least
MIN_PAUSE_S), so running executions keep most of the database's time."""
SQLITE_PAUSE_RATIO = 20.0
"""The same on SQLite, where a batch holds the only write lock and, in the embedded mode, the
event loop (statements run inline): running executions wait for all of it, so it takes less."""
SQLITE_MAX_BATCH = 100
"""On SQLite a batch is at most this many executions, so each stall of the event loop is short."""
MIN_PAUSE_S = 0.01

_AGE = re.compile(r"^\s*(\d+)\s*([dhm])\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_age(text: str) -> timedelta:
    """`30d`, `12h` or `90m` as a timedelta; ValueError with a message for the user otherwise."""
    match = _AGE.match(text)
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: a whole number of days, hours or minutes, "
            "like 30d, 12h or 90m"
        )
    amount = int(match.group(1))
    if amount <= 0:
        raise ValueError(f"invalid duration {text!r}: it must be more than 0")
    try:
        return timedelta(**{_UNITS[match.group(2)]: amount})
    except OverflowError:
        raise ValueError(f"invalid duration {text!r}: too long") from None


@dataclass(frozen=True)
class PruneReport:
    cutoff: datetime
    """Executions that finished before this were removed (or counted, in a dry run)."""
    removed: store.Removed
    kept: int
    """Old finished executions kept: an unfinished child execution or re-run holds them."""
    seconds: float
    dry_run: bool = False
    interrupted: bool = False
    """The pass stopped early (this process is no longer the leader)."""

    def summary(self) -> str:
        removed = self.removed
        when = self.cutoff.isoformat(timespec="seconds")
        kept = f"; kept {self.kept} held by unfinished executions" if self.kept else ""
        if self.interrupted:
            kept += "; stopped early (no longer the leader)"
        if self.dry_run:
            return (
                f"Would remove {removed.executions} executions that finished before {when} "
                f"(dry run: nothing removed){kept}"
            )
        return (
            f"Removed {removed.executions} executions that finished before {when}, "
            f"{removed.rows} rows in all ({removed.steps} steps, {removed.logs} logs, "
            f"{removed.events} events) in {self.seconds:.1f} s{kept}"
        )


async def prune(
    db: Database,
    cutoff: datetime,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
    pause_ratio: float | None = None,
    go_on: Callable[[], Awaitable[bool]] | None = None,
) -> PruneReport:
    """One pass: remove the finished executions that finished before `cutoff`, `batch_size`
    executions per transaction (at most SQLITE_MAX_BATCH on SQLite), pausing between them
    (`pause_ratio`: PAUSE_RATIO, or SQLITE_PAUSE_RATIO on SQLite). `go_on` is asked before
    each batch after the first; False ends the pass early."""
    if pause_ratio is None:
        pause_ratio = SQLITE_PAUSE_RATIO if db.is_sqlite else PAUSE_RATIO
    if db.is_sqlite:
        batch_size = min(batch_size, SQLITE_MAX_BATCH)
    started = time.monotonic()
    removed = store.Removed()
    kept = 0
    position: store.Position | None = None
    first = True
    while True:
        if not first and go_on is not None and not await go_on():
            return PruneReport(
                cutoff, removed, kept, time.monotonic() - started, dry_run, interrupted=True
            )
        first = False
        batch_started = time.monotonic()
        if dry_run:
            async with db.read() as conn:
                batch = await store.prune_batch(
                    conn, before=cutoff, after=position, limit=batch_size, dry_run=True
                )
        else:
            async with db.write() as conn:
                batch = await store.prune_batch(
                    conn, before=cutoff, after=position, limit=batch_size
                )
        removed += batch.removed
        kept += batch.kept
        if batch.next is None:
            break
        position = batch.next
        if not dry_run:
            took = time.monotonic() - batch_started
            await asyncio.sleep(max(MIN_PAUSE_S, took * pause_ratio))
    return PruneReport(cutoff, removed, kept, time.monotonic() - started, dry_run)


class Retention:
    """The background passes (EXECUTION_RETENTION_DAYS), every RETENTION_INTERVAL_MS."""

    def __init__(
        self,
        db: Database,
        *,
        days: float,
        interval_ms: int,
        batch_size: int,
        is_leader: Callable[[], Awaitable[bool]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.keep = timedelta(days=days)
        self.interval_ms = interval_ms
        self.batch_size = batch_size
        self.is_leader = is_leader
        self.clock = clock

    async def run_once(self) -> PruneReport | None:
        """One pass, if this process is the leader (always, without an election)."""
        if self.is_leader is not None and not await self.is_leader():
            return None
        return await prune(
            self.db,
            self.clock() - self.keep,
            batch_size=self.batch_size,
            go_on=self.is_leader,
        )

    async def run_forever(self, say: Callable[[str], None] = print) -> None:
        """A pass at once, then one every interval; `say` prints what a pass removed."""
        while True:
            try:
                report = await self.run_once()
                if report is not None and (report.removed.executions or report.interrupted):
                    say(f"[Retention] {report.summary()}")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention pass failed; will try again")
            await asyncio.sleep(self.interval_ms / 1000)
