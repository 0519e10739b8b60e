"""Each metric against hand-computed timings (vLLM's definitions)."""

from __future__ import annotations

import math

import pytest

from bench import metrics
from bench.records import RequestRecord


def record(
    start: float,
    tokens: list[float],
    last: float | None = None,
    out: int | None = None,
    error: str | None = None,
) -> RequestRecord:
    return RequestRecord(
        index=0,
        phase="rate",
        level=1,
        intended_at=start,
        dispatched_at=start,
        token_times=tokens,
        last_at=last if last is not None else (tokens[-1] if tokens else 0.0),
        ended_at=last if last is not None else (tokens[-1] if tokens else start),
        output_tokens=out if out is not None else len(tokens),
        error=error,
    )


def test_ttft_e2e_tpot_itl_from_known_times() -> None:
    r = record(10.0, [10.05, 10.055, 10.06, 10.065], last=10.07, out=5)
    assert metrics.ttft(r) == pytest.approx(0.05)
    assert metrics.e2e_latency(r) == pytest.approx(0.07)
    assert metrics.tpot(r) == pytest.approx((0.07 - 0.05) / 4)
    assert metrics.itls(r) == pytest.approx([0.005, 0.005, 0.005])


def test_tpot_is_undefined_for_one_token_and_ttft_for_none() -> None:
    assert metrics.tpot(record(0, [0.1], out=1)) is None
    assert metrics.ttft(record(0, [])) is None


def test_percentile_interpolates_like_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert metrics.percentile(values, 50) == 2.5
    assert metrics.percentile(values, 90) == pytest.approx(3.7)
    assert metrics.percentile([5.0], 99) == 5.0
    assert math.isnan(metrics.percentile([], 50))


def test_throughputs_count_successes_over_wall_time() -> None:
    records = [
        record(0, [0.5, 1.0], out=10),
        record(1, [1.5, 2.0], out=30),
        record(0, [0.2], out=99, error="x"),
    ]
    duration = metrics.wall_time(records)
    assert duration == pytest.approx(2.0)
    assert metrics.output_throughput(records, duration) == pytest.approx(20.0)
    assert metrics.request_throughput(records, duration) == pytest.approx(1.0)


def test_goodput_needs_every_slo() -> None:
    fast = record(0, [0.05, 0.06], out=2)
    slow_first = record(0, [0.5, 0.51], out=2)
    slow_tokens = record(0, [0.05, 0.25], out=2)
    slo = metrics.Slo(ttft_ms=100, tpot_ms=50)
    assert [metrics.meets_slo(r, slo) for r in (fast, slow_first, slow_tokens)] == [True, False, False]
    assert metrics.goodput([fast, slow_first, slow_tokens], slo, 2.0) == pytest.approx(0.5)
    assert not metrics.meets_slo(record(0, [0.01], error="boom"), metrics.Slo())


def test_prefill_fit_recovers_intercept_and_rate() -> None:
    records = []
    for tokens in (128, 256, 512, 1024, 2048):
        r = record(0.0, [0.030 + tokens * 20e-6, 0.5])
        r.prompt_tokens = tokens
        records.append(r)
    fit = metrics.prefill_fit(records)
    assert fit is not None
    assert fit.intercept_ms == pytest.approx(30.0)
    assert fit.ms_per_token == pytest.approx(0.02)
    assert fit.tokens_per_s == pytest.approx(50_000)
    assert fit.r_squared == pytest.approx(1.0)
    assert metrics.prefill_fit(records[:1]) is None
