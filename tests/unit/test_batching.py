"""Batcher: concurrent calls share one bulk call; each caller gets its own result or error."""

from __future__ import annotations

import asyncio

import pytest

from workflow_engine.batching import Batcher


class Bad(ValueError):
    pass


def _recording(calls: list[list[int]], *, delay: float = 0.0):  # type: ignore[no-untyped-def]
    async def bulk(items: list[int]) -> list[int | Exception]:
        calls.append(list(items))
        await asyncio.sleep(delay)
        if any(item < 0 for item in items) and len(items) > 1:
            raise Bad("a negative item fails the whole statement")
        return [Bad(f"{item} refused") if item < 0 else item * 10 for item in items]

    return bulk


async def test_concurrent_calls_share_one_bulk_call_and_get_their_own_results() -> None:
    calls: list[list[int]] = []
    batcher: Batcher[int, int] = Batcher(_recording(calls), name="t")
    results = await asyncio.gather(*(batcher(n) for n in range(1, 6)))
    assert results == [10, 20, 30, 40, 50]
    assert calls == [[1, 2, 3, 4, 5]]


async def test_calls_made_while_a_bulk_call_is_in_flight_go_in_the_next() -> None:
    calls: list[list[int]] = []
    batcher: Batcher[int, int] = Batcher(_recording(calls, delay=0.05), name="t")
    first = asyncio.create_task(batcher(1))
    await asyncio.sleep(0.01)
    later = await asyncio.gather(batcher(2), batcher(3))
    assert (await first, list(later)) == (10, [20, 30])
    assert calls == [[1], [2, 3]]


async def test_an_error_in_place_of_a_result_reaches_only_its_caller() -> None:
    async def bulk(items: list[int]) -> list[int | Exception]:
        return [Bad("no") if item == 2 else item for item in items]

    batcher: Batcher[int, int] = Batcher(bulk, name="t")
    outcomes = await asyncio.gather(*(batcher(n) for n in (1, 2, 3)), return_exceptions=True)
    assert outcomes[0] == 1 and outcomes[2] == 3
    assert isinstance(outcomes[1], Bad)


async def test_a_failed_bulk_call_fails_every_caller_unless_failures_are_isolated() -> None:
    calls: list[list[int]] = []
    shared: Batcher[int, int] = Batcher(_recording(calls), name="t")
    outcomes = await asyncio.gather(*(shared(n) for n in (1, -1, 3)), return_exceptions=True)
    assert all(isinstance(o, Bad) for o in outcomes)

    calls.clear()
    isolated: Batcher[int, int] = Batcher(
        _recording(calls), name="t", isolate_failures=lambda exc: isinstance(exc, Bad)
    )
    outcomes = await asyncio.gather(*(isolated(n) for n in (1, -1, 3)), return_exceptions=True)
    assert outcomes[0] == 10 and outcomes[2] == 30
    assert isinstance(outcomes[1], Bad) and "refused" in str(outcomes[1])
    assert calls == [[1, -1, 3], [1], [-1], [3]]

    # An error that is not an item's fault (the bulk call may have taken effect) is not retried.
    calls.clear()
    cautious: Batcher[int, int] = Batcher(
        _recording(calls), name="t", isolate_failures=lambda exc: False
    )
    outcomes = await asyncio.gather(*(cautious(n) for n in (1, -1, 3)), return_exceptions=True)
    assert all(isinstance(o, Bad) for o in outcomes)
    assert calls == [[1, -1, 3]]


async def test_a_cancelled_caller_does_not_cancel_its_neighbours() -> None:
    calls: list[list[int]] = []
    batcher: Batcher[int, int] = Batcher(_recording(calls, delay=0.05), name="t")
    gone = asyncio.create_task(batcher(1))
    stays = asyncio.create_task(batcher(2))
    await asyncio.sleep(0.01)
    gone.cancel()
    assert await stays == 20
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert calls == [[1, 2]]


async def test_batches_are_capped() -> None:
    calls: list[list[int]] = []
    batcher: Batcher[int, int] = Batcher(_recording(calls), name="t", max_batch=2)
    assert await asyncio.gather(*(batcher(n) for n in range(5))) == [0, 10, 20, 30, 40]
    assert [len(c) for c in calls] == [2, 2, 1]
