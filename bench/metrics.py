"""Metrics, each defined once, as vLLM's benchmark (`vllm/benchmarks/serve.py`) defines them.

- TTFT: first chunk carrying `choices` minus the request's start.
- E2E latency: last data chunk minus the request's start.
- TPOT: (E2E − TTFT) / (output tokens − 1), per request with more than one output token.
- ITL: the gaps between consecutive `choices` chunks, pooled over requests.
- Output throughput: successful output tokens / the level's wall time; request throughput likewise.
- Goodput: successful requests meeting every given SLO (TTFT, TPOT, E2E) per second.

One deliberate difference: "start" is the *intended* start (see `RequestRecord`), which for the closed
loop equals the dispatch and for the open loop makes a late bench visible instead of hiding it.
The arithmetic (percentiles, TPOT, ITL) is `backends/serving_metrics.py`, shared with the emulator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from backends import serving_metrics
from backends.serving_metrics import mean as mean  # bench.metrics is where bench finds every metric
from backends.serving_metrics import percentile as percentile
from bench.records import RequestRecord


def ttft(record: RequestRecord) -> float | None:
    """Seconds from the intended start to the first token; None when no token arrived."""
    return record.token_times[0] - record.intended_at if record.token_times else None


def e2e_latency(record: RequestRecord) -> float | None:
    """Seconds from the intended start to the last data chunk."""
    return record.last_at - record.intended_at if record.last_at else None


def tpot(record: RequestRecord) -> float | None:
    """Mean seconds per output token after the first; None for answers of one token or less."""
    first, end = ttft(record), e2e_latency(record)
    if first is None or end is None:
        return None
    return serving_metrics.tpot(first, end, record.output_tokens)


def itls(record: RequestRecord) -> list[float]:
    """The gaps between consecutive token chunks of one answer."""
    return serving_metrics.itls(record.token_times)


def wall_time(records: Sequence[RequestRecord]) -> float:
    """The level's duration: first intended start to the last end (vLLM's benchmark duration)."""
    if not records:
        return 0.0
    start = min(r.intended_at for r in records)
    end = max(max(r.ended_at, r.last_at) for r in records)
    return max(end - start, 1e-9)


def output_throughput(records: Sequence[RequestRecord], duration: float) -> float:
    """Successful output tokens per second of wall time."""
    return sum(r.output_tokens for r in records if r.ok) / duration if duration > 0 else 0.0


def request_throughput(records: Sequence[RequestRecord], duration: float) -> float:
    """Successful requests per second of wall time."""
    return sum(1 for r in records if r.ok) / duration if duration > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Slo:
    """Service-level objectives in milliseconds; None means "not constrained"."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2e_ms))


def meets_slo(record: RequestRecord, slo: Slo) -> bool:
    """A success whose TTFT, TPOT and E2E are each within its objective (vLLM: TPOT of 0 for 1 token)."""
    if not record.ok:
        return False
    checks = (
        (slo.ttft_ms, ttft(record)),
        (slo.tpot_ms, tpot(record) or 0.0),
        (slo.e2e_ms, e2e_latency(record)),
    )
    return all(limit is None or (value is not None and value * 1000 <= limit) for limit, value in checks)


def goodput(records: Sequence[RequestRecord], slo: Slo, duration: float) -> float:
    """Requests per second that succeeded within every SLO."""
    return sum(1 for r in records if meets_slo(r, slo)) / duration if duration > 0 else 0.0


@dataclass(frozen=True, slots=True)
class PrefillFit:
    """TTFT ≈ intercept + prompt tokens x ms_per_token, fitted over the successful requests."""

    intercept_ms: float
    ms_per_token: float
    r_squared: float
    points: int

    @property
    def tokens_per_s(self) -> float:
        return 1000 / self.ms_per_token if self.ms_per_token > 0 else math.inf


def prefill_fit(records: Sequence[RequestRecord]) -> PrefillFit | None:
    """Fit TTFT against prompt length (the server's count where it gave one); None under 2 lengths.

    Theil-Sen (the median of pairwise slopes, then the median intercept) rather than least squares:
    a baseline has few points per length, and one request that met a hiccup (a cold cache, a busy
    host) would otherwise tilt the whole line.
    """
    points = [
        (float(r.prompt_tokens if r.prompt_tokens is not None else r.expected_prompt_tokens or 0), t * 1000)
        for r in records
        if r.ok and (t := ttft(r)) is not None
    ]
    if len({x for x, _ in points}) < 2:
        return None
    slopes = [
        (y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1 :] if x2 != x1
    ]
    slope = percentile(slopes, 50)
    intercept = percentile([y - slope * x for x, y in points], 50)
    my = mean([y for _, y in points])
    total = sum((y - my) ** 2 for _, y in points)
    residual = sum((y - intercept - slope * x) ** 2 for x, y in points)
    return PrefillFit(intercept, slope, 1 - residual / total if total > 0 else 1.0, len(points))
