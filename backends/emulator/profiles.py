"""The GPU deployments the emulator can impersonate, with their calibrated timing parameters.

The numbers come from the seed benchmark's CSVs (/work/shared/seeds/results/) and the blog text;
docs/emulator.md explains each value and shows the fit. Profiles are immutable data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from backends.emulator.timing import PrefillStage, StepCosts


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """vLLM scheduler limits: the running batch, the per-step token budget and the KV cache."""

    max_num_seqs: int
    max_num_batched_tokens: int
    kv_cache_tokens: int
    block_size: int = 16

    @property
    def kv_blocks(self) -> int:
        return self.kv_cache_tokens // self.block_size


@dataclass(frozen=True, slots=True)
class Target:
    """A measured point the profile is calibrated against (p50s, as vLLM's benchmark defines them)."""

    concurrency: int
    ttft_p50_s: float
    tpot_p50_s: float
    throughput_tok_s: float


@dataclass(frozen=True, slots=True)
class Profile:
    """Everything that shapes an emulated deployment's timing and identity."""

    name: str
    served_model_name: str
    description: str
    max_model_len: int
    default_max_tokens: int
    ingress_s: float
    """Client -> load balancer -> Ray Serve proxy/router -> engine, paid once before a request is queued."""
    limits: EngineLimits
    costs: StepCosts
    prefill_stage: PrefillStage | None = None
    """Set for prefill/decode disaggregation: prompts are prefilled elsewhere, then queue for decode."""
    stream_batching_interval_s: float = 0.0
    """Ray Serve's `stream_batching_interval_ms`: tokens reach the client in chunks this far apart."""
    targets: tuple[Target, ...] = field(default=())


# Qwen2.5-7B-Instruct, one A10G (24 GB), Ray Serve + vLLM. KV: 28 layers x 2 x 4 KV heads x 128 x 2 B =
# 56 KiB/token; ~4.4 GiB left after weights at gpu_memory_utilization 0.9 -> ~80k tokens.
QWEN_A10G = Profile(
    name="qwen-a10g",
    served_model_name="qwen2.5-7b-instruct",
    description="Qwen2.5-7B-Instruct on one A10G (Ray Serve + vLLM), prefill and decode on the same GPU",
    max_model_len=16384,
    default_max_tokens=512,
    ingress_s=0.43,
    limits=EngineLimits(max_num_seqs=256, max_num_batched_tokens=2048, kv_cache_tokens=80_000),
    costs=StepCosts(base_s=0.03324, per_seq_s=0.00073, per_prefill_token_s=0.00084),
    stream_batching_interval_s=0.0,
    targets=(
        Target(concurrency=1, ttft_p50_s=0.700, tpot_p50_s=0.0340, throughput_tok_s=28.0),
        Target(concurrency=8, ttft_p50_s=2.435, tpot_p50_s=0.0396, throughput_tok_s=149.4),
    ),
)

# DeepSeek-V2-Lite on one TP-2 pair of A10Gs: decode is bound by reading the experts a batch touches.
_DEEPSEEK_TP2_COSTS = StepCosts(
    base_s=0.00900,
    per_seq_s=0.0,
    per_prefill_token_s=0.00245,
    per_expert_s=0.000625,
    experts_total=64,
    experts_active=6,
)

# DeepSeek-V2-Lite-Chat (16B MoE, 64 routed experts, 6 active per token, MLA), 4x A10G (g5.12xlarge):
# one TP-2 prefill instance and one TP-2 decode instance joined by a KV connector.
DEEPSEEK_PD_A10G = Profile(
    name="deepseek-pd-a10g",
    served_model_name="deepseek-v2-lite-chat",
    description="DeepSeek-V2-Lite-Chat on 4x A10G with prefill/decode disaggregation (TP 2 + TP 2)",
    max_model_len=8192,
    default_max_tokens=512,
    ingress_s=0.70,
    limits=EngineLimits(max_num_seqs=256, max_num_batched_tokens=2048, kv_cache_tokens=140_000),
    costs=_DEEPSEEK_TP2_COSTS,
    prefill_stage=PrefillStage(per_request_s=0.024, per_token_s=0.00245),
    stream_batching_interval_s=0.050,
    targets=(
        Target(concurrency=1, ttft_p50_s=1.358, tpot_p50_s=0.01275, throughput_tok_s=63.8),
        Target(concurrency=8, ttft_p50_s=4.326, tpot_p50_s=0.0282, throughput_tok_s=214.3),
    ),
)

# The same model on 2x A10G without disaggregation (TP 2): no CSV exists; derived in docs/emulator.md.
DEEPSEEK_A10G = Profile(
    name="deepseek-a10g",
    served_model_name="deepseek-v2-lite-chat",
    description="DeepSeek-V2-Lite-Chat on 2x A10G (TP 2), prefill and decode sharing the GPUs",
    max_model_len=8192,
    default_max_tokens=512,
    ingress_s=0.43,
    limits=EngineLimits(max_num_seqs=256, max_num_batched_tokens=2048, kv_cache_tokens=140_000),
    costs=_DEEPSEEK_TP2_COSTS,
    stream_batching_interval_s=0.050,
)

PROFILES: Mapping[str, Profile] = MappingProxyType(
    {p.name: p for p in (QWEN_A10G, DEEPSEEK_PD_A10G, DEEPSEEK_A10G)}
)


class UnknownProfileError(ValueError):
    """Raised for a profile name that is not one of `PROFILES`."""


def get_profile(name: str) -> Profile:
    """The profile called `name`; raises `UnknownProfileError` listing the valid names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownProfileError(
            f"unknown profile {name!r}; choose one of: {', '.join(sorted(PROFILES))}"
        ) from None


def with_limits(profile: Profile, **changes: Any) -> Profile:
    """A copy of `profile` with some engine limits changed (e.g. a bigger batch for capacity tests)."""
    return replace(profile, limits=replace(profile.limits, **changes))
