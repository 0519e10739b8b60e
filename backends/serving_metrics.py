"""The serving benchmark's metrics, each defined once, as vLLM's `benchmarks/serve.py` defines them.

Plain numbers in and out, and nothing but the standard library: the benchmark (`bench/metrics.py`, over
its request records, measured over HTTP) and the emulator's load generator and simulator
(`backends/emulator/benchstats.py`) both compute with these, so their numbers compare.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) with linear interpolation between ranks, as numpy's default
    computes it; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def tpot(ttft_s: float, e2e_s: float, output_tokens: int) -> float | None:
    """Time per output token after the first: (E2E − TTFT) / (output tokens − 1); None for answers of
    one token or less."""
    if output_tokens <= 1:
        return None
    return (e2e_s - ttft_s) / (output_tokens - 1)


def itls(token_times: Sequence[float]) -> list[float]:
    """Inter-token latencies: the gaps between consecutive token chunks of one answer."""
    return [b - a for a, b in itertools.pairwise(token_times)]
