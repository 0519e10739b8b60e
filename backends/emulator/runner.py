"""The real-time driver: one asyncio task that plays the emulated deployment against the wall clock.

Like an engine's busy loop, a single task sleeps until the next emulated event (a step ending, a
prefill finishing, a request getting through ingress), advances the deployment, and hands each
request that got a token to its stream. There is one timer for the whole engine, not one per token
per stream, which is what keeps 1,000 streams on schedule on two cores.

Emulated time is `(loop.time() - start) / time_scale`. The schedule is absolute: a late wake-up
delivers late but the next step still starts when the previous one was due to end, so the average
time per token stays exact under load (the lag is measured and reported by `stats()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass

from backends.emulator.deployment import Deployment
from backends.emulator.engine import Sequence, StepResult
from backends.emulator.profiles import Profile
from backends.emulator.prometheus import EngineMetrics
from backends.emulator.streams import TokenStream


@dataclass(slots=True)
class LagStats:
    """How far behind the wall clock the loop processed its events (wall seconds)."""

    events: int = 0
    total_s: float = 0.0
    max_s: float = 0.0

    def add(self, lag: float) -> None:
        self.events += 1
        self.total_s += lag
        self.max_s = max(self.max_s, lag)


class EngineRunner:
    """Runs a `Deployment` in real time and connects its requests to `TokenStream`s."""

    def __init__(self, profile: Profile, *, time_scale: float, metrics: EngineMetrics) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.profile = profile
        self.time_scale = time_scale
        self.metrics = metrics
        self.deployment = Deployment(profile)
        self.lag = LagStats()
        self._streams: dict[int, tuple[TokenStream, str]] = {}
        self._ids = itertools.count()
        self._origin = 0.0
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._sleeping_until: float | None = None

    def now(self) -> float:
        """Current emulated time."""
        return (asyncio.get_running_loop().time() - self._origin) / self.time_scale

    def wall_time(self, emulated: float) -> float:
        """The loop time at which emulated time `emulated` happens."""
        return self._origin + emulated * self.time_scale

    async def start(self) -> None:
        """Start the engine loop (call once, from the server's lifespan)."""
        self._origin = asyncio.get_running_loop().time()
        self._task = asyncio.create_task(self._run(), name="emulator-engine")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def submit(
        self, prompt_tokens: int, output_tokens: int, finish_reason: str
    ) -> tuple[Sequence, TokenStream]:
        """Queue a request; its tokens will appear on the returned stream."""
        seq = Sequence(next(self._ids), prompt_tokens, output_tokens)
        stream = TokenStream()
        self._streams[seq.seq_id] = (stream, finish_reason)
        self.deployment.submit(seq, self.now())
        self._reschedule()
        return seq, stream

    def cancel(self, seq: Sequence) -> None:
        """Drop a request whose client went away (a no-op once it finished)."""
        if self._streams.pop(seq.seq_id, None) is None:
            return
        self.deployment.cancel(seq, self.now())
        self._reschedule()

    def stats(self) -> dict[str, float | int]:
        """Engine state and scheduling lag, for /health."""
        lag = self.lag
        return {
            "running": self.deployment.num_running,
            "waiting": self.deployment.num_waiting,
            "kv_cache_usage": round(self.deployment.engine.kv_usage, 4),
            "events": lag.events,
            "mean_lag_ms": round(lag.total_s / lag.events * 1000, 3) if lag.events else 0.0,
            "max_lag_ms": round(lag.max_s * 1000, 3),
        }

    def _reschedule(self) -> None:
        """Wake the loop if a new event is due before the one it sleeps for."""
        waiter = self._wakeup
        if waiter is None or waiter.done():
            return
        when = self.deployment.next_event_time()
        if when is not None and (self._sleeping_until is None or when < self._sleeping_until):
            waiter.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            when = self.deployment.next_event_time()
            wall = self.wall_time(when) if when is not None else None
            if when is None or wall is None or wall > loop.time():
                await self._sleep(wall)
                continue
            self.lag.add(loop.time() - wall)
            # max(): float rounding must never leave the due event unprocessed (a busy loop).
            self._deliver(self.deployment.advance(max(self.now(), when)))

    async def _sleep(self, wall: float | None) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._wakeup = waiter
        self._sleeping_until = None if wall is None else (wall - self._origin) / self.time_scale
        timer = loop.call_at(wall, _wake, waiter) if wall is not None else None
        try:
            await waiter
        finally:
            self._wakeup = None
            if timer is not None:
                timer.cancel()

    def _deliver(self, results: list[StepResult]) -> None:
        streams = self._streams
        reasons: dict[int, str] = {}
        for result in results:
            for seq in result.tokens:
                entry = streams.get(seq.seq_id)
                if entry is not None:
                    entry[0].publish(seq.generated, seq.done)
            for seq in result.finished:
                entry = streams.pop(seq.seq_id, None)
                reasons[seq.seq_id] = entry[1] if entry is not None else "stop"
            self.metrics.record_step(result, reasons)
        self.metrics.record_state(self.deployment)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
