"""Batching a fast stream into screen updates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ui.coalesce import coalesce


async def burst(items: list[int], pause_after: int | None = None, pause_s: float = 0.0) -> AsyncIterator[int]:
    for item in items:
        yield item
        if item == pause_after:
            await asyncio.sleep(pause_s)


async def test_items_arrive_in_order_in_few_batches() -> None:
    batches = [b async for b in coalesce(burst(list(range(500))), window_s=0.01)]
    assert [i for b in batches for i in b] == list(range(500))
    assert len(batches) < 50


async def test_first_item_is_not_held_back() -> None:
    async def slow() -> AsyncIterator[str]:
        yield "first"
        await asyncio.sleep(10)
        yield "never"

    stream = coalesce(slow(), window_s=5)
    assert await asyncio.wait_for(anext(stream), timeout=1) == ["first"]
    await stream.aclose()


async def test_items_after_a_pause_come_in_a_later_batch() -> None:
    batches = [b async for b in coalesce(burst([1, 2, 3], pause_after=1, pause_s=0.1), window_s=0.01)]
    assert batches == [[1], [2, 3]]


async def test_an_error_comes_after_the_items_before_it() -> None:
    async def failing() -> AsyncIterator[int]:
        yield 1
        raise ValueError("boom")

    seen: list[int] = []

    async def collect() -> None:
        async for batch in coalesce(failing(), window_s=0.01):
            seen.extend(batch)

    with pytest.raises(ValueError, match="boom"):
        await collect()
    assert seen == [1]


async def test_closing_early_closes_the_source() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[int]:
        try:
            while True:
                yield 1
                await asyncio.sleep(0.001)
        finally:
            closed.set()

    stream = coalesce(endless(), window_s=0.01)
    await anext(stream)
    await stream.aclose()
    assert closed.is_set()
