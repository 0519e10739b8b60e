"""A run's event stream: numbered, kept in memory while the run lives, written to SQL in batches.

Subscribers replay from any position and then follow live, so a client that reconnects with
`Last-Event-ID` gets exactly the events after the one it saw.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from protocol.run_events import RunEvent


class RunEventLog:
    def __init__(self, run_id: str, start_after: int = 0) -> None:
        self.run_id = run_id
        self.start_after = start_after
        """Events before this one are in the database already: a run that resumes after waiting for
        tool approvals goes on numbering after its stored events."""
        self.events: list[RunEvent] = []
        self.closed = False
        self._flushed = 0
        self._changed = asyncio.Event()

    def append(self, type_: str, data: dict[str, Any]) -> RunEvent:
        if self.closed:
            raise RuntimeError(f"event log of run {self.run_id} is closed")
        record = self.upcoming(type_, data)
        self.events.append(record)
        self._wake()
        return record

    def upcoming(self, type_: str, data: dict[str, Any]) -> RunEvent:
        """The event `append` would add next: to store it before subscribers see it."""
        return RunEvent(self.start_after + len(self.events) + 1, type_, data)

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        # Waiters hold the old Event, which stays set; new waiters get a fresh one.
        self._changed.set()
        self._changed = asyncio.Event()

    def unflushed(self) -> list[RunEvent]:
        """Events not yet in the database; call `mark_flushed` once they are."""
        return self.events[self._flushed :]

    def mark_flushed(self, upto_id: int) -> None:
        self._flushed = max(self._flushed, upto_id - self.start_after)

    def rows(self, events: Sequence[RunEvent]) -> list[dict[str, Any]]:
        """`events` of this run as rows of the run_events table."""
        return [{"run_id": self.run_id, "seq": e.id, "type": e.type, "data": e.data} for e in events]

    async def follow(self, after: int) -> AsyncIterator[RunEvent]:
        """Events with `id > after`, then new ones as they come, until the log closes."""
        position = max(after - self.start_after, 0)
        while True:
            while position < len(self.events):
                yield self.events[position]
                position += 1
            if self.closed:
                return
            await self._changed.wait()
