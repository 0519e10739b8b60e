"""The engine core: continuous batching, chunked prefill, KV admission and preemption."""

from __future__ import annotations

import pytest

from backends.emulator.engine import EngineCore, Sequence, StepResult
from backends.emulator.profiles import EngineLimits
from backends.emulator.timing import StepCosts

COSTS = StepCosts(base_s=0.01, per_seq_s=0.001, per_prefill_token_s=0.0001)


def engine(max_num_seqs: int = 8, budget: int = 256, kv_tokens: int = 16_000) -> EngineCore:
    return EngineCore(EngineLimits(max_num_seqs, budget, kv_tokens), COSTS)


def run(core: EngineCore, now: float = 0.0, max_steps: int = 10_000) -> list[StepResult]:
    """Step the engine until it is idle."""
    results: list[StepResult] = []
    for _ in range(max_steps):
        step = core.start_step(now)
        if step is None:
            return results
        now = step.end
        results.append(core.finish_step())
    raise AssertionError("the engine did not go idle")


def test_a_request_gets_its_first_token_after_prefill_then_one_per_step() -> None:
    core = engine()
    seq = Sequence(0, prompt_tokens=100, output_tokens=3)
    core.add(seq)
    results = run(core)
    assert len(results) == 3
    assert results[0].prefill_tokens == 100
    assert results[1].decode_seqs == 1
    assert seq.first_token_at == pytest.approx(0.01 + 100 * 0.0001)
    assert seq.finished_at == results[-1].time
    assert core.free_blocks == core.limits.kv_blocks


def test_a_prompt_longer_than_the_token_budget_prefills_in_chunks() -> None:
    core = engine(budget=64)
    seq = Sequence(0, prompt_tokens=200, output_tokens=1)
    core.add(seq)
    results = run(core)
    assert [r.prefill_tokens for r in results] == [64, 64, 64, 8]
    assert [len(r.tokens) for r in results] == [0, 0, 0, 1]


def test_decodes_and_a_new_prefill_share_a_step() -> None:
    core = engine()
    first = Sequence(0, 10, 5)
    core.add(first)
    core.start_step(0.0)
    core.finish_step()
    core.add(Sequence(1, 50, 5))
    step = core.start_step(1.0)
    assert step is not None
    assert (step.decode_seqs, step.prefill_tokens) == (1, 50)


def test_max_num_seqs_caps_the_running_batch_and_the_rest_wait() -> None:
    core = engine(max_num_seqs=2)
    for i in range(5):
        core.add(Sequence(i, 10, 4))
    core.start_step(0.0)
    assert (len(core.running), len(core.waiting)) == (2, 3)
    run_results = [core.finish_step(), *run(core, 1.0)]
    finished = [s.seq_id for r in run_results for s in r.finished]
    assert sorted(finished) == [0, 1, 2, 3, 4]
    assert finished[:2] == [0, 1]


def test_kv_capacity_queues_requests_until_blocks_free_up() -> None:
    # 64 tokens of cache = 4 blocks: one 40-token request (3 blocks, growing) fits, a second does not.
    core = engine(kv_tokens=64)
    first, second = Sequence(0, 40, 4), Sequence(1, 40, 4)
    core.add(first)
    core.add(second)
    core.start_step(0.0)
    assert core.running == [first]
    assert list(core.waiting) == [second]
    assert core.kv_usage == pytest.approx(3 / 4)
    run_results = [core.finish_step(), *run(core, 1.0)]
    assert second.scheduled_at is not None
    assert first.finished_at is not None
    assert second.scheduled_at >= first.finished_at
    assert {s.seq_id for r in run_results for s in r.finished} == {0, 1}


def test_running_out_of_blocks_preempts_the_newest_request_which_recomputes() -> None:
    # 3 blocks: two 16-token prompts fit (1 block each); decoding needs a second block each.
    core = engine(kv_tokens=48)
    old, new = Sequence(0, 16, 20), Sequence(1, 16, 20)
    core.add(old)
    core.add(new)
    results = run(core)
    assert new.preemptions >= 1
    assert old.preemptions == 0
    assert sum(r.preempted for r in results) >= 1
    assert old.generated == new.generated == 20
    assert old.finished_at is not None
    assert new.finished_at is not None
    assert old.finished_at < new.finished_at
    assert core.free_blocks == core.limits.kv_blocks


def test_cancel_frees_the_blocks_and_the_slot() -> None:
    core = engine()
    seq = Sequence(0, 100, 50)
    core.add(seq)
    core.start_step(0.0)
    core.finish_step()
    assert core.kv_usage > 0
    core.cancel(seq)
    assert core.kv_usage == 0
    assert core.start_step(1.0) is None


def test_step_results_capture_first_tokens_and_inter_token_latencies() -> None:
    core = engine()
    core.add(Sequence(0, 10, 3))
    results = run(core)
    assert [len(r.first_tokens) for r in results] == [1, 0, 0]
    gaps = [itl for r in results for itl in r.itls]
    assert gaps == pytest.approx([0.011, 0.011])
