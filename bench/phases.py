"""The run's plan: which levels each phase runs, with which prompts, in which loop (the strategy).

- warmup: `warmup_requests` distinct prompts, one at a time, results discarded;
- baseline: one request at a time over prompt-length bins (fixed-length synthetic prompts, so the
  prefill fit sees exact lengths), or over the agent task set in agent mode;
- concurrency: closed loops at each level, `max(20, 4 x c)` requests unless configured;
- rate: open loops at each rate for `duration_s`, Poisson or constant arrivals.
Prompts rotate through the dataset so consecutive levels do not resend the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.arrivals import arrival_offsets
from bench.config import BenchConfig, Phase
from bench.datasets.prompts import Prompt
from bench.datasets.synthetic import fixed_prompts


@dataclass(frozen=True, slots=True)
class LevelPlan:
    phase: Phase
    level: float
    prompts: list[Prompt]
    concurrency: int | None = None
    """Closed loop with this many workers; None for the open loop."""
    offsets: list[float] | None = None
    """Open loop: arrival offsets in seconds (one per prompt)."""

    @property
    def open_loop(self) -> bool:
        return self.offsets is not None

    @property
    def target_rate(self) -> float | None:
        return self.level if self.phase == "rate" else None


class PromptCycle:
    """Hands out prompts in order, wrapping around, so each level gets the next ones."""

    def __init__(self, prompts: list[Prompt]) -> None:
        if not prompts:
            raise ValueError("the dataset produced no prompts")
        self._prompts, self._next = prompts, 0

    def take(self, count: int) -> list[Prompt]:
        taken = [self._prompts[(self._next + i) % len(self._prompts)] for i in range(count)]
        self._next = (self._next + count) % len(self._prompts)
        return taken


def plan_phase(
    phase: Phase, config: BenchConfig, cycle: PromptCycle, tasks: list[Prompt] | None = None
) -> list[LevelPlan]:
    """The levels of one phase, in the order they run."""
    if phase == "warmup":
        return (
            [LevelPlan("warmup", 0, cycle.take(config.warmup_requests), concurrency=1)]
            if config.warmup_requests
            else []
        )
    if phase == "baseline":
        if tasks is not None:
            return [LevelPlan("baseline", 1, list(tasks) * config.baseline_requests_per_bin, concurrency=1)]
        output = config.max_tokens or config.baseline_output_tokens
        return [
            LevelPlan(
                "baseline",
                bin_tokens,
                fixed_prompts(
                    config.baseline_requests_per_bin,
                    bin_tokens,
                    output,
                    config.seed + i,
                    f"baseline{bin_tokens}",
                ),
                concurrency=1,
            )
            for i, bin_tokens in enumerate(config.baseline_bins)
        ]
    if phase == "concurrency":
        return [
            LevelPlan("concurrency", c, cycle.take(config.requests_for(c)), concurrency=c)
            for c in config.concurrency
        ]
    plans = []
    for i, rate in enumerate(config.rates):
        offsets = arrival_offsets(rate, config.duration_s, config.arrival, config.seed + i)
        plans.append(LevelPlan("rate", rate, cycle.take(len(offsets)), offsets=offsets))
    return plans
