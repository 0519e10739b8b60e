"""Closed and open loops, driven by a fake server made of loop timers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from bench.clients.clock import now
from bench.scheduler import closed_loop, open_loop


class FakeServer:
    """Answers each launch after `service_s`, and remembers how many were in flight at once."""

    def __init__(self, service_s: float) -> None:
        self.service_s = service_s
        self.in_flight = 0
        self.peak = 0
        self.launched: list[tuple[int, float, float]] = []

    def launch(
        self, index: int, intended_at: float, done: Callable[[tuple[int, float, float]], None]
    ) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        started = now()
        self.launched.append((index, intended_at, started))

        def finish() -> None:
            self.in_flight -= 1
            done((index, intended_at, started))

        asyncio.get_running_loop().call_later(self.service_s, finish)


async def test_closed_loop_runs_at_its_concurrency() -> None:
    server = FakeServer(0.02)
    run = await closed_loop(server.launch, 4, 40)
    assert [r[0] for r in run.results] == list(range(40))
    assert server.peak == 4
    # 40 requests, 4 at a time, 20 ms each: about 10 rounds
    assert 0.2 * 0.9 <= run.ended_at - run.started_at < 0.2 * 5


async def test_open_loop_keeps_its_schedule_whatever_the_latency() -> None:
    server = FakeServer(0.2)  # slow answers must not hold back arrivals (no coordinated omission)
    offsets = [i * 0.01 for i in range(50)]
    start = now() + 0.02
    run = await open_loop(server.launch, offsets, start)
    assert len(run.results) == 50
    assert server.peak > 10
    intended = [r[1] for r in run.results]
    assert intended == pytest.approx([start + o for o in offsets])
    lateness = sorted(started - wanted for _, wanted, started in server.launched)
    assert lateness[len(lateness) // 2] < 0.02  # generous: a loaded 2-core machine


async def test_open_loop_with_a_cap_waits_and_counts_the_wait() -> None:
    server = FakeServer(0.05)
    run = await open_loop(server.launch, [0.0] * 6, now(), max_in_flight=2)
    assert server.peak == 2
    assert len(run.results) == 6
    # the last pair waited for two service times after its (common) intended start
    waits = sorted(started - wanted for _, wanted, started in server.launched)
    assert waits[-1] >= 0.09
