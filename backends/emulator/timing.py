"""The emulator's timing model as pure functions: how long one engine step or one prefill takes.

Every duration here is in emulated seconds (what the GPU deployment would take); `--time-scale` is
applied by the real-time driver only. docs/emulator.md derives each formula and its parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StepCosts:
    """What one engine iteration (a forward pass over the scheduled tokens) costs.

    A step that decodes `s` sequences and prefills `p` prompt tokens lasts
    `base_s + per_seq_s * s + per_prefill_token_s * p + per_expert_s * experts_touched(s + p)`.
    """

    base_s: float
    per_seq_s: float
    per_prefill_token_s: float
    per_expert_s: float = 0.0
    experts_total: int = 0
    experts_active: int = 0


@dataclass(frozen=True, slots=True)
class PrefillStage:
    """A disaggregated prefill stage (P/D): a FIFO server that handles one request at a time."""

    per_request_s: float
    per_token_s: float


def experts_touched(tokens: int, experts_total: int, experts_active: int) -> float:
    """Expected distinct routed experts per MoE layer when `tokens` tokens each pick `experts_active`.

    Decode on a MoE model is bound by reading expert weights, and a batch reads each touched expert
    once, so step time follows this saturating curve rather than the batch size itself.
    """
    if experts_total <= 0 or experts_active <= 0 or tokens <= 0:
        return 0.0
    miss = 1.0 - experts_active / experts_total
    return experts_total * (1.0 - miss**tokens)


def step_duration(costs: StepCosts, decode_seqs: int, prefill_tokens: int) -> float:
    """Seconds one engine step takes for `decode_seqs` decoding sequences and `prefill_tokens` new
    prompt tokens (chunked prefill shares the step with decode, so each slows the other)."""
    if decode_seqs < 0 or prefill_tokens < 0:
        raise ValueError("token counts cannot be negative")
    if decode_seqs == 0 and prefill_tokens == 0:
        return 0.0
    experts = experts_touched(decode_seqs + prefill_tokens, costs.experts_total, costs.experts_active)
    return (
        costs.base_s
        + costs.per_seq_s * decode_seqs
        + costs.per_prefill_token_s * prefill_tokens
        + costs.per_expert_s * experts
    )


def prefill_service_time(stage: PrefillStage, prompt_tokens: int) -> float:
    """Seconds the disaggregated prefill stage spends on one prompt (prefill plus KV transfer)."""
    return stage.per_request_s + stage.per_token_s * max(prompt_tokens, 0)


def blocks_for(tokens: int, block_size: int) -> int:
    """KV-cache blocks that hold `tokens` tokens (vLLM's paged attention allocates whole blocks)."""
    return math.ceil(max(tokens, 0) / block_size)
