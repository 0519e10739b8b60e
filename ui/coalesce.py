"""Batching a fast async stream into at most one batch per time window.

Each batch becomes one screen update. Tokens can arrive hundreds per second (and a resumed run
replays its whole history at once); redrawing the chat for each one would swamp the browser and
Gradio's queue, while a short window still looks live.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _End:
    error: Exception | None = None


async def coalesce(source: AsyncIterator[T], window_s: float) -> AsyncIterator[list[T]]:
    """Yield what `source` produced, in order, grouped into batches at least `window_s` apart.

    The first item is yielded as soon as it arrives. An exception from `source` is raised after the
    items before it have been yielded.
    """
    queue: asyncio.Queue[T | _End] = asyncio.Queue()

    async def pump() -> None:
        error = None
        try:
            async for item in source:
                queue.put_nowait(item)
        except Exception as exc:
            error = exc
        queue.put_nowait(_End(error))

    task = asyncio.create_task(pump())
    try:
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            items = [x for x in batch if not isinstance(x, _End)]
            if items:
                yield items
            end = next((x for x in batch if isinstance(x, _End)), None)
            if end is not None:
                if end.error is not None:
                    raise end.error
                return
            await asyncio.sleep(window_s)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
