"""The calibrated profiles against the seed's measurements (virtual time, so it runs in milliseconds)."""

from __future__ import annotations

import pytest

from backends.emulator.benchstats import percentile, summarize
from backends.emulator.profiles import PROFILES, get_profile
from backends.emulator.simulate import Workload, seed_workload, sharegpt_like_prompts, simulate


@pytest.mark.parametrize("name", ["qwen-a10g", "deepseek-pd-a10g"])
def test_the_model_reproduces_the_seed_benchmark_within_ten_percent(name: str) -> None:
    profile = get_profile(name)
    assert {t.concurrency for t in profile.targets} == {1, 8}
    for target in profile.targets:
        summary = summarize(simulate(profile, seed_workload(target.concurrency)))
        assert summary.ttft_p50 == pytest.approx(target.ttft_p50_s, rel=0.10)
        assert summary.tpot_p50 == pytest.approx(target.tpot_p50_s, rel=0.10)
        assert summary.throughput_tok_s == pytest.approx(target.throughput_tok_s, rel=0.10)


def test_without_disaggregation_deepseek_matches_pd_alone_but_collapses_under_sustained_load() -> None:
    shared, pd = get_profile("deepseek-a10g"), get_profile("deepseek-pd-a10g")
    alone = [summarize(simulate(p, seed_workload(1))) for p in (shared, pd)]
    assert alone[0].tpot_p50 == pytest.approx(alone[1].tpot_p50, rel=0.05)
    # The blog's no-P/D figures (TTFT ~5 s, ~6.6 tok/s per request) as a sustained 2 req/s overload.
    loaded = simulate(shared, Workload(sharegpt_like_prompts(60, 299, 887, 1), 512, request_rate=2.0, seed=1))
    per_request = percentile([t.output_tokens / t.latency for t in loaded], 50)
    assert summarize(loaded).ttft_p50 > 5.0
    assert 4.0 < per_request < 10.0
    pd_loaded = simulate(pd, Workload(sharegpt_like_prompts(60, 299, 887, 1), 512, request_rate=2.0, seed=1))
    assert percentile([t.output_tokens / t.latency for t in pd_loaded], 50) > per_request * 1.4


def test_every_profile_defaults_to_the_seed_output_length_and_fits_its_context() -> None:
    for profile in PROFILES.values():
        assert profile.default_max_tokens == 512
        assert profile.limits.kv_cache_tokens >= profile.max_model_len


def test_sharegpt_like_prompts_have_the_requested_median_and_p90() -> None:
    lengths = sharegpt_like_prompts(200, 299, 887)
    assert percentile(lengths, 50) == pytest.approx(299, rel=0.03)
    assert percentile(lengths, 90) == pytest.approx(887, rel=0.05)
    assert lengths != tuple(sorted(lengths))
