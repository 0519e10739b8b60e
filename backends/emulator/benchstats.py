"""Benchmark metrics exactly as vLLM's `benchmarks/serve.py` defines them, from per-request timings.

TTFT is first token time minus send time; TPOT is `(latency - ttft) / (output_tokens - 1)`; ITL is the
gap between consecutive streamed chunks; throughput is output tokens over the whole run's duration. The
arithmetic is `backends/serving_metrics.py`, which the benchmark (`bench/`) computes with too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from backends import serving_metrics
from backends.serving_metrics import percentile


@dataclass(slots=True)
class RequestTiming:
    """What a streaming client saw for one request (seconds from an arbitrary origin)."""

    sent_at: float
    first_token_at: float
    finished_at: float
    output_tokens: int
    chunk_times: list[float] = field(default_factory=list)
    """Arrival time of every content chunk, the first included."""
    server_submitted_at: float | None = None
    """When the server says the request entered it, on the server's clock (the emulator reports it)."""

    @property
    def ttft(self) -> float:
        return self.first_token_at - self.sent_at

    @property
    def latency(self) -> float:
        return self.finished_at - self.sent_at

    @property
    def tpot(self) -> float | None:
        """Mean time per output token after the first; None for single-token answers."""
        return serving_metrics.tpot(self.ttft, self.latency, self.output_tokens)

    def itls(self) -> list[float]:
        return serving_metrics.itls(self.chunk_times)


@dataclass(frozen=True, slots=True)
class Summary:
    """p50/p90 of the usual metrics over one run, in seconds (throughput in tokens per second)."""

    requests: int
    ttft_p50: float
    ttft_p90: float
    tpot_p50: float
    tpot_p90: float
    itl_p50: float
    itl_p90: float
    latency_p50: float
    throughput_tok_s: float


def summarize(timings: Sequence[RequestTiming]) -> Summary:
    """Summary statistics over completed requests."""
    if not timings:
        raise ValueError("no completed requests to summarize")
    ttfts = [t.ttft for t in timings]
    tpots = [tp for t in timings if (tp := t.tpot) is not None]
    itls = [gap for t in timings for gap in t.itls()]
    duration = max(t.finished_at for t in timings) - min(t.sent_at for t in timings)
    tokens = sum(t.output_tokens for t in timings)
    return Summary(
        requests=len(timings),
        ttft_p50=percentile(ttfts, 50),
        ttft_p90=percentile(ttfts, 90),
        tpot_p50=percentile(tpots, 50),
        tpot_p90=percentile(tpots, 90),
        itl_p50=percentile(itls, 50),
        itl_p90=percentile(itls, 90),
        latency_p50=percentile([t.latency for t in timings], 50),
        throughput_tok_s=tokens / duration if duration > 0 else math.inf,
    )
