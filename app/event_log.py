"""A run's event stream: numbered, kept in memory while the run lives, written to SQL in batches.

Subscribers replay from any position and then follow live, so a client that reconnects with
`Last-Event-ID` gets exactly the events after the one it saw.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

TERMINAL_EVENT = "run.finished"


@dataclass(frozen=True, slots=True)
class RunEventRecord:
    seq: int
    type: str
    data: dict[str, Any]

    def data_json(self) -> str:
        return json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))


class RunEventLog:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.events: list[RunEventRecord] = []
        self.closed = False
        self._flushed = 0
        self._changed = asyncio.Event()

    def append(self, type_: str, data: dict[str, Any]) -> RunEventRecord:
        if self.closed:
            raise RuntimeError(f"event log of run {self.run_id} is closed")
        record = RunEventRecord(len(self.events) + 1, type_, data)
        self.events.append(record)
        self._wake()
        return record

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        # Waiters hold the old Event, which stays set; new waiters get a fresh one.
        self._changed.set()
        self._changed = asyncio.Event()

    def unflushed(self) -> list[RunEventRecord]:
        """Events not yet in the database; call `mark_flushed` once they are."""
        return self.events[self._flushed :]

    def mark_flushed(self, upto_seq: int) -> None:
        self._flushed = max(self._flushed, upto_seq)

    async def follow(self, after: int) -> AsyncIterator[RunEventRecord]:
        """Events with `seq > after`, then new ones as they come, until the log closes."""
        position = max(after, 0)
        while True:
            while position < len(self.events):
                yield self.events[position]
                position += 1
            if self.closed:
                return
            await self._changed.wait()
