"""How late the bench's own event loop runs: the number that says whether its timings can be trusted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.clients.clock import now


@dataclass(slots=True)
class LoopLagMonitor:
    """Fires every `interval_s` on absolute deadlines and records how late each firing was.

    A busy loop delays every callback, including the ones that dispatch requests and (for engines
    without kernel stamps) the ones that stamp arriving bytes; this measures exactly that delay.
    `on_tick` callbacks run about once a second (used to re-sync the kernel clock offset).
    """

    interval_s: float = 0.005
    on_tick: list[Callable[[], None]] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)
    _handle: asyncio.TimerHandle | None = None
    _due: float = 0.0
    _ticks: int = 0

    def start(self) -> None:
        self._due = now() + self.interval_s
        self._arm()

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._handle = loop.call_later(max(0.0, self._due - now()), self._fire)

    def _fire(self) -> None:
        current = now()
        # uvloop's millisecond timers may fire a little early; early is not lag.
        self.samples.append(max(0.0, current - self._due))
        self._ticks += 1
        if self._ticks % max(1, round(1 / self.interval_s)) == 0:
            for callback in self.on_tick:
                callback()
        self._due += self.interval_s
        if self._due < current:  # fell behind by whole intervals: skip them, they are already counted
            self._due = current + self.interval_s
        self._arm()

    def stop(self) -> list[float]:
        """Stop and return the lag samples (seconds) since `start`."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        samples, self.samples = self.samples, []
        return samples
