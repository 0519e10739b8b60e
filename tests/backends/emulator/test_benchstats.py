"""Benchmark metric definitions, checked against hand-computed timings."""

from __future__ import annotations

import math

import pytest

from backends.emulator.benchstats import RequestTiming, percentile, summarize


def test_tpot_excludes_the_first_token_as_vllm_defines_it() -> None:
    timing = RequestTiming(sent_at=10.0, first_token_at=10.5, finished_at=12.5, output_tokens=5)
    assert timing.ttft == pytest.approx(0.5)
    assert timing.tpot == pytest.approx((2.5 - 0.5) / 4)


def test_single_token_answers_have_no_tpot() -> None:
    assert RequestTiming(0.0, 1.0, 1.0, 1).tpot is None


def test_percentile_interpolates_linearly_like_numpy() -> None:
    assert percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert percentile([10, 20, 30, 40, 50], 90) == pytest.approx(46.0)
    assert math.isnan(percentile([], 50))


def test_summary_throughput_is_tokens_over_the_whole_run() -> None:
    timings = [
        RequestTiming(0.0, 1.0, 3.0, 10, [1.0, 2.0, 3.0]),
        RequestTiming(1.0, 2.0, 5.0, 30, [2.0, 5.0]),
    ]
    summary = summarize(timings)
    assert summary.throughput_tok_s == pytest.approx(40 / 5.0)
    assert summary.itl_p50 == pytest.approx(1.0)
    assert summary.ttft_p50 == pytest.approx(1.0)
