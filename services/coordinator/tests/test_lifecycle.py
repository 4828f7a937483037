"""Streams end with UNAVAILABLE as soon as the node starts stopping (lifecycle.Stopping)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from marquee_coordinator.lifecycle import Stopping
from marquee_platform import errors


async def numbers(gate: asyncio.Event | None = None) -> AsyncIterator[int]:
    for n in range(3):
        yield n
    if gate is not None:
        await gate.wait()  # a stream whose client sends nothing more
    yield 99


async def test_items_flow_and_a_finished_source_ends_the_stream() -> None:
    assert [n async for n in Stopping().iterate(numbers())] == [0, 1, 2, 99]


async def test_a_stream_waiting_for_its_next_item_ends_at_once_on_stop() -> None:
    stopping = Stopping()
    seen: list[int] = []

    async def consume() -> None:
        async for n in stopping.iterate(numbers(asyncio.Event())):
            seen.append(n)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    assert seen == [0, 1, 2]
    stopping.set()
    with pytest.raises(errors.Unavailable):
        await asyncio.wait_for(task, 1)
    assert task.cancelling() == 0  # turned into UNAVAILABLE, not left cancelled


async def test_a_stream_busy_elsewhere_stops_before_its_next_item() -> None:
    stopping = Stopping()
    seen: list[int] = []

    async def consume() -> None:
        async for n in stopping.iterate(numbers()):
            seen.append(n)
            if n == 1:
                stopping.set()  # as if a renewal was committing meanwhile

    with pytest.raises(errors.Unavailable):
        await consume()
    assert seen == [0, 1]


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    stopping = Stopping()

    async def consume() -> None:
        async for _ in stopping.iterate(numbers(asyncio.Event())):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    task.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await task
