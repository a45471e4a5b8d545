"""Coalescing concurrent calls into one bulk call: the group-commit pattern for the hot path's
single-row operations (claims, dispatch reads, execution inserts, queue adds).

`await batcher(item)` returns that item's result. The items submitted while a bulk call is in
flight (or in the same event-loop turn) go together in the next one, so under load N callers
share one round trip, and a lone caller waits for nothing but its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 500


class Batcher(Generic[Item, Result]):
    def __init__(
        self,
        bulk: Callable[[list[Item]], Awaitable[Sequence[Result | Exception]]],
        *,
        name: str,
        isolate_failures: Callable[[Exception], bool] | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        """`bulk` gets the items and returns one result per item, in order; an Exception in
        its place is raised to that item's caller. When `bulk` raises, every caller of the
        batch gets the error, unless `isolate_failures` says the error may be one item's
        fault (say, a value the database refuses): then each item is tried again alone, so it
        cannot fail its neighbours. Never for errors where the bulk call may have taken
        effect (a connection lost after the statement ran): trying again would repeat it."""
        self._bulk = bulk
        self._name = name
        self._isolate = isolate_failures
        self._max = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            # Starts on the next loop turn, so the callers of this turn are already queued.
            self._task = asyncio.create_task(self._drain(), name=self._name)
        # A caller cancelled meanwhile cancels only its own future: the bulk call goes on for
        # its neighbours, and its result is dropped.
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max], self._pending[self._max :]
            await self._run(batch)

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._bulk([item for item, _future in batch])
        except Exception as exc:
            if self._isolate is not None and self._isolate(exc) and len(batch) > 1:
                for one in batch:
                    await self._run([one])
                return
            for _item, future in batch:
                _settle(future, exc)
            return
        except BaseException as exc:  # cancelled (loop shutting down): nobody may hang
            for _item, future in batch:
                _settle(future, exc)
            raise
        if len(results) != len(batch):
            error = RuntimeError(f"{self._name}: {len(results)} results for {len(batch)} items")
            for _item, future in batch:
                _settle(future, error)
            return
        for (_item, future), result in zip(batch, results, strict=True):
            _settle(future, result)


def _settle(future: asyncio.Future[Result], outcome: Result | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, asyncio.CancelledError):
        future.cancel()
    elif isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
