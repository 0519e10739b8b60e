"""A level's summary row (the seeds' columns) and the bench's judgement of its own timing."""

from __future__ import annotations

import csv

from bench.arrivals import arrival_offsets
from bench.metrics import Slo
from bench.records import RequestRecord
from bench.summary import SEED_COLUMNS, health_of, summarize_requests
from tests.support.processes import ROOT

SEEDS = ROOT.parent / "shared" / "seeds" / "results"  # shared/ sits beside the checkout


def test_seed_columns_are_the_seeds_own() -> None:
    seed_files = sorted(SEEDS.glob("*concurrency*.csv")) if SEEDS.is_dir() else []
    if seed_files:  # the shared seeds are beside the checkout in development and CI
        with seed_files[0].open() as handle:
            assert tuple(next(csv.reader(handle))[1:]) == SEED_COLUMNS
    assert SEED_COLUMNS[0] == "total_requests"
    assert SEED_COLUMNS[-1] == "output_tokens_p99"


def make(i: int, ttft: float, error: str | None = None) -> RequestRecord:
    return RequestRecord(
        index=i,
        phase="concurrency",
        level=2,
        intended_at=0.0,
        dispatched_at=0.0,
        token_times=[ttft, ttft + 0.01],
        last_at=ttft + 0.02,
        ended_at=ttft + 0.02,
        output_tokens=3,
        prompt_tokens=100,
        error=error,
        token_source="usage",
    )


def test_row_has_the_seed_layout_first() -> None:
    records = [make(0, 0.1), make(1, 0.2), make(2, 0.3, error="boom")]
    health = health_of([0.0] * 3, [0.0] * 3, [0.001], "kernel", 5, None)
    summary = summarize_requests("concurrency", 2, records, health, Slo(ttft_ms=150))
    keys = list(summary.row)
    assert keys[0] == "concurrency"
    assert tuple(keys[1 : 1 + len(SEED_COLUMNS)]) == SEED_COLUMNS
    row = summary.row
    assert (row["total_requests"], row["success_count"], row["error_count"], row["error_rate_%"]) == (
        3,
        2,
        1,
        33.33,
    )
    assert row["ttft_p50_ms"] == 150.0
    assert row["tpot_p50_ms"] == 10.0
    assert row["input_tokens_p50"] == 100
    assert row["goodput_rps"] == round(1 / 0.32, 3)
    assert summary.errors == {"boom": 1}
    assert row["reliable"] == "yes"


def test_a_bench_that_fell_behind_says_so() -> None:
    intended = [i * 0.01 for i in range(100)]
    late = [t + (0.02 if i % 10 == 0 else 0.0) for i, t in enumerate(intended)]
    health = health_of(intended, late, [0.0005] * 50, "kernel", 5, 100)
    assert health.late_requests == 10
    assert not health.reliable
    assert any("late" in p for p in health.problems)
    behind = [2 * t for t in intended]  # sent at half the scheduled pace
    slow = health_of(intended, behind, [0.0] * 10, "kernel", 5, 100)
    assert any("achieved" in p for p in slow.problems)
    laggy_user_clock = health_of(intended, intended, [0.008] * 100, "user", 5, None)
    laggy_kernel_clock = health_of(intended, intended, [0.008] * 100, "kernel", 5, None)
    assert not laggy_user_clock.reliable
    assert laggy_kernel_clock.reliable


def test_errors_are_vouched_for_only_when_the_server_answered_them() -> None:
    def failed(i: int, source: str) -> RequestRecord:
        record = make(i, 0.3, error="HTTP 503: busy" if source == "server" else "connect failed: refused")
        record.error_source = source
        return record

    kept_up = health_of([0.0] * 3, [0.0] * 3, [0.001], "kernel", 5, None)
    clean = summarize_requests("concurrency", 2, [make(0, 0.1), make(1, 0.2)], kept_up, Slo())
    assert (clean.verdict(), clean.trusted) == ("yes", True)
    answered = summarize_requests("concurrency", 2, [make(0, 0.1), failed(1, "server")], kept_up, Slo())
    assert answered.trusted
    assert answered.verdict() == "yes: server errors"
    assert answered.error_origin().startswith("each one the server's own answer")
    mixed = [make(0, 0.1), failed(1, "server"), failed(2, "transport"), failed(3, "transport")]
    unsure = summarize_requests("concurrency", 2, mixed, kept_up, Slo())
    assert not unsure.trusted
    assert unsure.verdict() == "unsure: 2 transport errors"
    assert unsure.error_origin().startswith("2 of them in transport")
    intended = [i * 0.01 for i in range(100)]
    fell_behind = health_of(intended, [2 * t for t in intended], [0.0], "kernel", 5, 100)
    late = summarize_requests("rate", 100, [make(0, 0.1)], fell_behind, Slo())
    assert not late.trusted
    assert late.verdict() == "no"


def test_a_short_poisson_draw_is_the_workload_not_a_late_bench() -> None:
    """Poisson arrivals over 2 s at 20/s drew 32 requests (15.8/s): sent on time, the bench kept up."""
    offsets = arrival_offsets(20, 2, "poisson", 0)
    assert (len(offsets) - 1) / offsets[-1] < 0.9 * 20  # the draw itself ran slower than asked
    health = health_of(offsets, [t + 0.0005 for t in offsets], [0.0005] * 50, "kernel", 5, 20)
    assert health.reliable, health.problems
