"""engine/deltas.py: a step's streamed pieces compacted into few writes, none lost or reordered."""

from __future__ import annotations

import asyncio

import pytest

from workflow_engine.engine.deltas import DeltaStream
from workflow_engine.errors import LeaseLost


class Writes:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.wrote = asyncio.Event()

    async def __call__(self, text: str) -> None:
        self.texts.append(text)
        self.wrote.set()


async def test_pieces_within_the_interval_make_one_write_on_close() -> None:
    writes = Writes()
    stream = DeltaStream(writes, interval_s=60)
    for piece in ("Hel", "lo", ", ", "world"):
        await stream.add(piece)
    assert writes.texts == []
    await stream.close()
    assert writes.texts == ["Hello, world"]
    await stream.close()  # nothing left: no empty write
    assert writes.texts == ["Hello, world"]


async def test_the_timer_writes_what_waits_without_more_input() -> None:
    writes = Writes()
    stream = DeltaStream(writes, interval_s=0.01)
    await stream.add("a")
    await stream.add("b")
    await asyncio.wait_for(writes.wrote.wait(), 5)
    assert writes.texts == ["ab"]
    await stream.add("c")
    await stream.close()
    assert writes.texts == ["ab", "c"]


async def test_max_chars_writes_at_once() -> None:
    writes = Writes()
    stream = DeltaStream(writes, interval_s=60, max_chars=5)
    await stream.add("abc")
    await stream.add("defg")
    assert writes.texts == ["abcdefg"]
    await stream.add("h")
    await stream.close()
    assert "".join(writes.texts) == "abcdefgh"


async def test_discard_drops_what_is_pending() -> None:
    writes = Writes()
    stream = DeltaStream(writes, interval_s=60)
    await stream.add("never sent")
    await stream.discard()
    await stream.close()
    assert writes.texts == []


async def test_a_failed_timer_write_fails_the_next_add() -> None:
    async def lost(text: str) -> None:
        raise LeaseLost()

    stream = DeltaStream(lost, interval_s=0.001)
    await stream.add("x")
    with pytest.raises(LeaseLost):
        for _ in range(1000):
            await asyncio.sleep(0.01)
            await stream.add("y")
