"""The timing model's pure functions."""

from __future__ import annotations

import pytest

from backends.emulator.timing import (
    PrefillStage,
    StepCosts,
    blocks_for,
    experts_touched,
    prefill_service_time,
    step_duration,
)

DENSE = StepCosts(base_s=0.03, per_seq_s=0.001, per_prefill_token_s=0.0008)
MOE = StepCosts(
    base_s=0.009,
    per_seq_s=0.0,
    per_prefill_token_s=0.002,
    per_expert_s=0.0006,
    experts_total=64,
    experts_active=6,
)


def test_an_empty_step_takes_no_time() -> None:
    assert step_duration(DENSE, 0, 0) == 0.0


def test_single_sequence_decode_costs_base_plus_one_sequence() -> None:
    assert step_duration(DENSE, 1, 0) == pytest.approx(0.031)


@pytest.mark.parametrize("costs", [DENSE, MOE])
def test_decode_step_grows_with_the_running_batch(costs: StepCosts) -> None:
    durations = [step_duration(costs, batch, 0) for batch in (1, 2, 4, 8, 64)]
    assert durations == sorted(durations)
    assert durations[-1] > durations[0] * 1.5


def test_prefill_in_a_step_slows_the_decodes_sharing_it() -> None:
    assert step_duration(DENSE, 8, 512) == pytest.approx(step_duration(DENSE, 8, 0) + 512 * 0.0008)


def test_moe_step_cost_saturates_once_every_expert_is_read() -> None:
    assert experts_touched(1, 64, 6) == pytest.approx(6.0)
    assert experts_touched(10_000, 64, 6) == pytest.approx(64.0)
    growth_small = step_duration(MOE, 8, 0) - step_duration(MOE, 4, 0)
    growth_large = step_duration(MOE, 512, 0) - step_duration(MOE, 508, 0)
    assert growth_large < growth_small / 100


def test_dense_models_touch_no_experts() -> None:
    assert experts_touched(100, 0, 0) == 0.0


def test_prefill_stage_time_is_linear_in_prompt_length() -> None:
    stage = PrefillStage(per_request_s=0.02, per_token_s=0.002)
    assert prefill_service_time(stage, 0) == pytest.approx(0.02)
    assert prefill_service_time(stage, 500) == pytest.approx(1.02)


def test_negative_token_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        step_duration(DENSE, -1, 0)


@pytest.mark.parametrize(("tokens", "blocks"), [(0, 0), (1, 1), (16, 1), (17, 2), (160, 10)])
def test_blocks_hold_whole_pages_of_sixteen_tokens(tokens: int, blocks: int) -> None:
    assert blocks_for(tokens, 16) == blocks
