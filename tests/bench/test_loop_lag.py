"""The bench's own timing instruments: loop lag and the kernel clock's mapping."""

from __future__ import annotations

import asyncio
import struct
import time

import pytest

from bench.clients.clock import KernelClock, now
from bench.loop_lag import LoopLagMonitor


async def test_a_blocked_loop_shows_as_lag() -> None:
    ticks: list[int] = []
    monitor = LoopLagMonitor(interval_s=0.005, on_tick=[lambda: ticks.append(1)])
    monitor.start()
    await asyncio.sleep(0.05)
    time.sleep(0.08)  # block the loop, as a busy bench would
    await asyncio.sleep(1.1)
    samples = monitor.stop()
    assert max(samples) >= 0.06
    assert len(samples) > 20
    assert ticks  # the once-a-second callbacks ran
    assert monitor.stop() == []


def test_kernel_stamps_map_onto_the_monotonic_clock() -> None:
    clock = KernelClock()
    real = time.time_ns()
    stamp = clock.from_cmsg(struct.pack("qq", real // 1_000_000_000, real % 1_000_000_000))
    assert stamp == pytest.approx(now(), abs=0.01)
