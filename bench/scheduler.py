"""Runs a load level: a closed loop (fixed concurrency) or an open loop (arrivals on a schedule).

The scheduler knows nothing about HTTP: it calls `launch(index, intended_at, done)` and collects what
`done` receives. Launches happen from loop callbacks, not tasks, so the open loop dispatches on time
even at thousands of requests per second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bench.clients.clock import now

T = TypeVar("T")

# A timer that fires this close to an arrival dispatches it; uvloop's millisecond timers can fire up to
# 1 ms early, and re-arming for less than this would only spin the loop.
_EARLY_S = 0.0002


Launch = Callable[[int, float, Callable[[T], None]], None]
"""`launch(index, intended_at, done)`: start request `index` now; call `done(result)` when it ends."""


@dataclass(slots=True)
class LevelRun(Generic[T]):
    """What a level produced: results in launch order, and when it started and ended."""

    results: list[T] = field(default_factory=list)
    started_at: float = 0.0
    ended_at: float = 0.0
    stopped_early: str | None = None


async def closed_loop(launch: Launch[T], concurrency: int, total: int) -> LevelRun[T]:
    """`concurrency` workers, each starting its next request the moment its last one ends."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    results: list[T | None] = [None] * total
    state = {"next": 0, "done": 0}

    def start_next() -> None:
        index = state["next"]
        state["next"] += 1

        def done(result: T) -> None:
            results[index] = result
            state["done"] += 1
            if state["next"] < total:
                start_next()
            elif state["done"] == total and not finished.done():
                finished.set_result(None)

        launch(index, now(), done)

    run: LevelRun[T] = LevelRun(started_at=now())
    for _ in range(min(concurrency, total)):
        start_next()
    if total:
        await finished
    run.ended_at = now()
    run.results = [r for r in results if r is not None]
    return run


async def open_loop(
    launch: Launch[T], offsets: Sequence[float], start_at: float, max_in_flight: int | None = None
) -> LevelRun[T]:
    """Launch request i at `start_at + offsets[i]`, whatever the responses do (no coordinated omission).

    With `max_in_flight`, arrivals beyond it wait for a slot; their latency still counts from their
    arrival time, so the wait shows.
    """
    loop = asyncio.get_running_loop()
    total = len(offsets)
    finished: asyncio.Future[None] = loop.create_future()
    results: list[T | None] = [None] * total
    state = {"next": 0, "done": 0, "in_flight": 0}
    timer: list[asyncio.TimerHandle | None] = [None]

    def on_timer() -> None:
        timer[0] = None
        dispatch()

    def make_done(index: int) -> Callable[[T], None]:
        def done(result: T) -> None:
            results[index] = result
            state["done"] += 1
            state["in_flight"] -= 1
            if max_in_flight is not None and state["next"] < total:
                dispatch()
            if state["done"] == total and not finished.done():
                finished.set_result(None)

        return done

    def dispatch() -> None:
        current = now()
        while state["next"] < total:
            index = state["next"]
            due = start_at + offsets[index]
            if due > current + _EARLY_S:
                break
            if max_in_flight is not None and state["in_flight"] >= max_in_flight:
                return  # a completion calls dispatch again
            state["next"] += 1
            state["in_flight"] += 1
            launch(index, due, make_done(index))
            current = now()
        if state["next"] < total and timer[0] is None:
            due = start_at + offsets[state["next"]]
            timer[0] = loop.call_later(max(0.0, due - now()), on_timer)

    run: LevelRun[T] = LevelRun(started_at=start_at)
    if total:
        timer[0] = loop.call_later(max(0.0, start_at + offsets[0] - now()), on_timer)
        await finished
    run.ended_at = now()
    run.results = [r for r in results if r is not None]
    return run
