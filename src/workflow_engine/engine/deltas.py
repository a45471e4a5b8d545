"""Compaction of a step's streamed output (an llm step's tokens) into `step_delta` events.

A model sends a token every few milliseconds; an event row and a commit per token would cost more
than the answer. A `DeltaStream` keeps what arrives and writes it as one event when the first piece
of it is `INTERVAL_S` old, or at once when it holds `MAX_CHARS`: at most ten rows a second per
streaming step, each at most 100 ms behind its first token. Every event is an ordinary one (a
`seq`, committed, then published), so a subscriber that joins late replays the same deltas, in
order, and their concatenation is the text streamed so far. The step's try writes what is left
before its end is written (`close`), so the deltas of a completed try add up to its whole text.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

INTERVAL_S = 0.1
MAX_CHARS = 2000

Write = Callable[[str], Awaitable[None]]


class DeltaStream:
    """The deltas of one try of one step; `write(text)` stores and publishes one event."""

    def __init__(
        self, write: Write, *, interval_s: float = INTERVAL_S, max_chars: int = MAX_CHARS
    ) -> None:
        self._write = write
        self._interval_s = interval_s
        self._max_chars = max_chars
        self._pending: list[str] = []
        self._size = 0
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None

    async def add(self, text: str) -> None:
        """Take one piece of output; it is written within `interval_s`."""
        if self._failed is not None:
            raise self._failed  # the timer's write failed (LeaseLost, a database error)
        if not text:
            return
        self._pending.append(text)
        self._size += len(text)
        if self._size >= self._max_chars:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._later(), name="step-deltas")

    async def flush(self) -> None:
        """Write what is pending as one event (nothing when nothing is)."""
        async with self._lock:
            if not self._pending:
                return
            text = "".join(self._pending)
            self._pending.clear()
            self._size = 0
            await self._write(text)

    async def close(self) -> None:
        """Write what is left, then stop the timer (before the try's end is written)."""
        if self._timer is not None or self._pending:
            await self.flush()  # after a write of the timer's in flight: the lock orders them
            await self.discard()
        if self._failed is not None:
            raise self._failed

    async def discard(self) -> None:
        """Drop what is pending and stop the timer (a try that failed or was stopped)."""
        self._pending.clear()
        self._size = 0
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer

    async def _later(self) -> None:
        """Write what waits every `interval_s` while anything does (pieces that arrive during
        a write go with the next one)."""
        try:
            while True:
                await asyncio.sleep(self._interval_s)
                await self.flush()
                if not self._pending:
                    break
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._failed = exc
        self._timer = None
