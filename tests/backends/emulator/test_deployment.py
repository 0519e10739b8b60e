"""The whole emulated deployment: ingress, disaggregated prefill, and the shapes the brief asks for."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backends.emulator.benchstats import summarize
from backends.emulator.deployment import Deployment
from backends.emulator.engine import Sequence
from backends.emulator.profiles import get_profile
from backends.emulator.simulate import Workload, simulate

QWEN = get_profile("qwen-a10g")
PD = get_profile("deepseek-pd-a10g")


def first_token_time(profile_name: str, prompt_tokens: int) -> float:
    timings = simulate(get_profile(profile_name), Workload((prompt_tokens,), 4))
    return timings[0].ttft


@pytest.mark.parametrize("profile", ["qwen-a10g", "deepseek-pd-a10g", "deepseek-a10g"])
def test_ttft_grows_with_prompt_length(profile: str) -> None:
    short, long = first_token_time(profile, 50), first_token_time(profile, 1500)
    assert long > short * 1.5


@pytest.mark.parametrize("profile", ["qwen-a10g", "deepseek-pd-a10g", "deepseek-a10g"])
def test_ttft_grows_with_queue_depth(profile: str) -> None:
    alone = summarize(simulate(get_profile(profile), Workload((300,), 8, concurrency=1))).ttft_p50
    timings = simulate(get_profile(profile), Workload((300,) * 16, 8, concurrency=16))
    ttfts = sorted(t.ttft for t in timings)
    assert ttfts[0] == pytest.approx(alone, rel=0.05)
    assert ttfts[-1] > alone * 3


@pytest.mark.parametrize("profile", ["qwen-a10g", "deepseek-pd-a10g"])
def test_tpot_grows_with_the_running_batch(profile: str) -> None:
    tpots = []
    for concurrency in (1, 8, 64):
        timings = simulate(get_profile(profile), Workload((20,) * concurrency, 200, concurrency=concurrency))
        tpots.append(summarize(timings).tpot_p50)
    assert tpots == sorted(tpots)
    assert tpots[-1] > tpots[0] * 1.2


def test_ingress_delays_arrival_at_the_engine() -> None:
    deployment = Deployment(QWEN)
    seq = Sequence(0, 10, 1)
    deployment.submit(seq, 1.0)
    assert deployment.next_event_time() == pytest.approx(1.0 + QWEN.ingress_s)
    assert deployment.num_waiting == 0
    deployment.advance(1.0 + QWEN.ingress_s)
    assert seq.arrived_at == pytest.approx(1.0 + QWEN.ingress_s)
    assert deployment.num_running == 1


def test_disaggregated_prefill_serves_one_prompt_at_a_time() -> None:
    deployment = Deployment(PD)
    first, second = Sequence(0, 400, 2), Sequence(1, 400, 2)
    deployment.submit(first, 0.0)
    deployment.submit(second, 0.0)
    while (when := deployment.next_event_time()) is not None:
        deployment.advance(when)
    assert PD.prefill_stage is not None
    service = PD.prefill_stage.per_request_s + 400 * PD.prefill_stage.per_token_s
    assert first.first_token_at is not None
    assert second.first_token_at is not None
    assert second.first_token_at - first.first_token_at == pytest.approx(service, rel=0.05)


def test_disaggregation_keeps_prefill_out_of_the_decode_steps() -> None:
    shared = replace(PD, name="shared", prefill_stage=None)
    prompts = (1000,) * 6
    pd_tpot = summarize(simulate(PD, Workload(prompts, 128, concurrency=6))).tpot_p50
    shared_tpot = summarize(simulate(shared, Workload(prompts, 128, concurrency=6))).tpot_p50
    assert shared_tpot > pd_tpot * 1.5


def test_cancelling_a_prompt_in_prefill_frees_the_prefill_server() -> None:
    deployment = Deployment(PD)
    first, second = Sequence(0, 2000, 2), Sequence(1, 10, 2)
    deployment.submit(first, 0.0)
    deployment.submit(second, 0.0)
    deployment.advance(PD.ingress_s)
    deployment.cancel(first, PD.ingress_s + 0.1)
    while (when := deployment.next_event_time()) is not None:
        deployment.advance(when)
    assert first.first_token_at is None
    assert second.first_token_at is not None
    assert second.first_token_at < PD.ingress_s + 1.0


def test_the_deployment_is_idle_when_everything_finished() -> None:
    deployment = Deployment(QWEN)
    deployment.submit(Sequence(0, 10, 3), 0.0)
    steps = []
    while (when := deployment.next_event_time()) is not None:
        steps.extend(deployment.advance(when))
    assert sum(len(step.tokens) for step in steps) == 3
    assert (deployment.num_running, deployment.num_waiting, deployment.engine.kv_usage) == (0, 0, 0.0)
