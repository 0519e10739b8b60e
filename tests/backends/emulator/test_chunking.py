"""Ray Serve-style stream batching."""

from __future__ import annotations

import pytest

from backends.emulator.chunking import flush_times, next_flush


def test_no_interval_delivers_every_token_when_produced() -> None:
    assert flush_times([0.1, 0.2, 0.3], 0.0) == [0.1, 0.2, 0.3]


def test_first_token_goes_out_at_once_then_tokens_wait_for_the_next_tick_or_the_end() -> None:
    times = [1.0, 1.012, 1.024, 1.036, 1.048, 1.060, 1.072]
    assert flush_times(times, 0.05) == pytest.approx([1.0, 1.05, 1.05, 1.05, 1.05, 1.072, 1.072])


def test_the_end_of_the_stream_flushes_immediately() -> None:
    assert flush_times([0.0, 0.01, 0.02], 0.05) == pytest.approx([0.0, 0.02, 0.02])


def test_next_flush_is_the_first_tick_after_now() -> None:
    assert next_flush(10.0, 10.0, 0.05) == pytest.approx(10.05)
    assert next_flush(10.0, 10.07, 0.05) == pytest.approx(10.10)
    assert next_flush(10.0, 10.10, 0.05) == pytest.approx(10.15)
