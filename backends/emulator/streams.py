"""Where the engine loop leaves tokens for one request's HTTP writer, and how the writer waits.

The engine loop only bumps a counter and, when the writer is waiting for it, resolves one future:
formatting and socket writes happen in the writer's own task, off the engine's critical path, and
a slow client only slows its own stream.
"""

from __future__ import annotations

import asyncio


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class TokenStream:
    """How many tokens of one request exist so far, and whether more will come."""

    __slots__ = ("_waiter", "_wake_on_token", "aborted", "finished", "produced")

    def __init__(self) -> None:
        self.produced = 0
        self.finished = False
        self.aborted = False
        self._waiter: asyncio.Future[None] | None = None
        self._wake_on_token = True

    @property
    def closed(self) -> bool:
        return self.finished or self.aborted

    def publish(self, produced: int, finished: bool) -> None:
        """Called by the engine loop after a step gave this request a token."""
        self.produced = produced
        self.finished = finished
        waiter = self._waiter
        if waiter is not None and (finished or self._wake_on_token):
            _wake(waiter)

    def abort(self) -> None:
        """The client went away: wake the writer so it stops."""
        self.aborted = True
        if self._waiter is not None:
            _wake(self._waiter)

    async def wait(self, sent: int, until: float | None = None) -> None:
        """Wait for a token beyond `sent` (when `until` is None) or for the loop time `until`
        (chunk batching); either way, return early when the stream ends."""
        if self.closed or (until is None and self.produced > sent):
            return
        loop = asyncio.get_running_loop()
        if until is not None and until <= loop.time():
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        self._wake_on_token = until is None
        timer = loop.call_at(until, _wake, waiter) if until is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
