"""A level's summary: the seeds' CSV row, plus how healthy the bench itself was while measuring it."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bench import metrics
from bench.records import AgentRecord, RequestRecord

# The seeds' columns, in their order; the first column (concurrency / request_rate / prompt_tokens) is
# added per phase.
SEED_COLUMNS = (
    "total_requests",
    "success_count",
    "error_count",
    "error_rate_%",
    "ttft_p50_ms",
    "ttft_p90_ms",
    "ttft_p99_ms",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "tpot_p50_ms",
    "tpot_p90_ms",
    "tpot_p99_ms",
    "itl_p50_ms",
    "itl_p90_ms",
    "itl_p99_ms",
    "requests_per_sec",
    "throughput_tokens_per_sec",
    "input_tokens_p50",
    "input_tokens_p90",
    "input_tokens_p99",
    "output_tokens_p50",
    "output_tokens_p90",
    "output_tokens_p99",
)
FIRST_COLUMN = {
    "warmup": "request",
    "baseline": "prompt_tokens",
    "concurrency": "concurrency",
    "rate": "request_rate",
}

Value = float | int | str


@dataclass(slots=True)
class GeneratorHealth:
    """Whether the bench kept up with its own schedule while measuring this level."""

    target_rate: float | None = None
    achieved_rate: float | None = None
    late_requests: int = 0
    dispatch_lag_p50_ms: float = 0.0
    dispatch_lag_p99_ms: float = 0.0
    loop_lag_p50_ms: float = 0.0
    loop_lag_p99_ms: float = 0.0
    loop_lag_max_ms: float = 0.0
    clock: str = "user"
    problems: list[str] = field(default_factory=list)

    @property
    def reliable(self) -> bool:
        return not self.problems


@dataclass(slots=True)
class LevelSummary:
    phase: str
    level: float
    row: dict[str, Value]
    health: GeneratorHealth
    errors: dict[str, int] = field(default_factory=dict)
    """The most frequent error messages, with their counts."""
    server_errors: int = 0
    """Failures that were the server's own answer (see `StreamOutcome.error_source`); the others failed
    in transport, where the bench cannot tell whose fault it was."""

    @property
    def error_count(self) -> int:
        return int(self.row.get("error_count", 0))

    @property
    def trusted(self) -> bool:
        """The bench kept its schedule and every failure, if any, was the server's own answer."""
        return self.health.reliable and self.server_errors >= self.error_count

    def verdict(self) -> str:
        """The 'bench ok' answer in a few words: plain "yes" only when `trusted` and error-free."""
        if not self.health.reliable:
            return "no"
        unexplained = self.error_count - self.server_errors
        if unexplained > 0:
            return f"unsure: {unexplained} transport errors"
        return "yes: server errors" if self.error_count else "yes"

    def error_origin(self) -> str:
        """Whose the level's failures were, as far as the bench can tell (empty without failures)."""
        unexplained = self.error_count - self.server_errors
        if not self.error_count:
            return ""
        if unexplained <= 0:
            return "each one the server's own answer (an error status, an error event or a broken stream)"
        return (
            f"{unexplained} of them in transport (connection, framing or timeout), which can be the "
            "server's fault or the bench's"
        )


def _ms(value: float) -> float:
    return round(value * 1000, 2) if not math.isnan(value) else math.nan


def _pcts(prefix: str, values: Sequence[float], scale: float = 1000, digits: int = 2) -> dict[str, Value]:
    row: dict[str, Value] = {}
    for q in (50, 90, 99):
        v = metrics.percentile(values, q)
        key = f"{prefix}_p{q}{'_ms' if scale == 1000 else ''}"
        if math.isnan(v):
            row[key] = math.nan
        else:
            row[key] = round(v * scale, digits) if digits else round(v * scale)
    return row


def health_of(
    intended: Sequence[float],
    dispatched: Sequence[float],
    loop_lag: Sequence[float],
    clock: str,
    late_threshold_ms: float,
    target_rate: float | None,
) -> GeneratorHealth:
    """Judge the bench's own timing for one level (see `GeneratorHealth`)."""
    lags = [d - i for i, d in zip(intended, dispatched, strict=True)]
    health = GeneratorHealth(target_rate=target_rate, clock=clock)
    health.late_requests = sum(1 for lag in lags if lag * 1000 > late_threshold_ms)
    health.dispatch_lag_p50_ms = _ms(metrics.percentile(lags, 50)) if lags else 0.0
    health.dispatch_lag_p99_ms = _ms(metrics.percentile(lags, 99)) if lags else 0.0
    if loop_lag:
        health.loop_lag_p50_ms = _ms(metrics.percentile(loop_lag, 50))
        health.loop_lag_p99_ms = _ms(metrics.percentile(loop_lag, 99))
        health.loop_lag_max_ms = _ms(max(loop_lag))
    if target_rate is not None and len(dispatched) > 1:
        span = max(dispatched) - min(intended)
        health.achieved_rate = round((len(dispatched) - 1) / span, 3) if span > 0 else math.inf
        # Against the schedule the bench drew, not the nominal rate: a short Poisson level can draw
        # fewer arrivals than rate x duration, which is the workload, not the bench falling behind.
        planned = max(intended) - min(intended)
        scheduled = min(target_rate, (len(intended) - 1) / planned) if planned > 0 else target_rate
        if health.achieved_rate < 0.95 * scheduled:
            health.problems.append(
                f"achieved {health.achieved_rate:g}/s of the {scheduled:.4g}/s scheduled "
                f"({target_rate:g}/s asked)"
            )
    # Over 1% of the level, and at least 3 requests: one late dispatch among seven says little.
    if lags and health.late_requests > max(0.01 * len(lags), 2):
        share = 100 * health.late_requests / len(lags)
        health.problems.append(f"{share:.1f}% of requests dispatched over {late_threshold_ms:g} ms late")
    # With kernel receive stamps a late loop delays only dispatches (counted above) and blurs the
    # spacing of chunks that piled up; with user-space stamps it shifts every measured time.
    lag_limit = late_threshold_ms * (4 if clock == "kernel" else 1)
    if health.loop_lag_p99_ms > lag_limit:
        effect = "ITL blurred" if clock == "kernel" else "every time shifted"
        health.problems.append(f"the bench's event loop lagged {health.loop_lag_p99_ms:g} ms (p99): {effect}")
    return health


def summarize_requests(
    phase: str, level: float, records: Sequence[RequestRecord], health: GeneratorHealth, slo: metrics.Slo
) -> LevelSummary:
    """The seeds' row (plus means, goodput and the bench's own health) for one level of requests."""
    ok = [r for r in records if r.ok]
    duration = metrics.wall_time(records)
    ttfts = [t for r in ok if (t := metrics.ttft(r)) is not None]
    e2es = [t for r in ok if (t := metrics.e2e_latency(r)) is not None]
    tpots = [t for r in ok if (t := metrics.tpot(r)) is not None]
    itls = [gap for r in ok for gap in metrics.itls(r)]
    inputs = [
        float(r.prompt_tokens if r.prompt_tokens is not None else r.expected_prompt_tokens or 0) for r in ok
    ]
    outputs = [float(r.output_tokens) for r in ok]
    row = _count_columns(phase, level, len(records), len(ok))
    row |= _pcts("ttft", ttfts) | _pcts("latency", e2es) | _pcts("tpot", tpots) | _pcts("itl", itls)
    row["requests_per_sec"] = round(metrics.request_throughput(records, duration), 3)
    row["throughput_tokens_per_sec"] = round(metrics.output_throughput(records, duration), 2)
    row |= _pcts("input_tokens", inputs, 1, 0) | _pcts("output_tokens", outputs, 1, 0)
    row |= {
        "ttft_mean_ms": _ms(metrics.mean(ttfts)),
        "latency_mean_ms": _ms(metrics.mean(e2es)),
        "tpot_mean_ms": _ms(metrics.mean(tpots)),
        "itl_mean_ms": _ms(metrics.mean(itls)),
        "goodput_rps": round(metrics.goodput(records, slo, duration), 3) if slo.any else math.nan,
        "duration_s": round(duration, 3),
        "token_source": ",".join(sorted({r.token_source for r in ok})) or "-",
    }
    row |= _health_columns(health)
    server_errors = sum(1 for r in records if r.error is not None and r.error_source == "server")
    return LevelSummary(phase, level, row, health, _top_errors(r.error for r in records), server_errors)


def summarize_agent_runs(
    phase: str, level: float, records: Sequence[AgentRecord], health: GeneratorHealth
) -> LevelSummary:
    """Agent runs: time to first event and first answer token, total, LLM / tool / chatstack time."""
    ok = [r for r in records if r.ok]
    duration = 0.0
    if records:
        duration = max(r.finished_at or r.dispatched_at for r in records) - min(
            r.intended_at for r in records
        )

    def since_start(values: Sequence[float], rs: Sequence[AgentRecord]) -> list[float]:
        return [v - r.intended_at for v, r in zip(values, rs, strict=True) if v]

    first_event = since_start([r.first_event_at for r in ok], ok)
    first_answer = since_start([r.first_answer_token_at for r in ok], ok)
    totals = [r.total_s for r in ok]
    checked = [r.answer_correct for r in ok if r.answer_correct is not None]
    tool_checked = [r.tool_valid for r in ok if r.tool_valid is not None]
    row = _count_columns(phase, level, len(records), len(ok))
    row |= (
        _pcts("first_event", first_event) | _pcts("first_answer_token", first_answer) | _pcts("total", totals)
    )
    row |= {
        "runs_per_sec": round(len(ok) / duration, 3) if duration > 0 else 0.0,
        "llm_calls_mean": round(metrics.mean([float(r.llm_calls) for r in ok]), 2) if ok else math.nan,
        "tool_calls_mean": round(metrics.mean([float(r.tool_calls) for r in ok]), 2) if ok else math.nan,
        "llm_ms_mean": _ms(metrics.mean([r.llm_s for r in ok])),
        "tools_ms_mean": _ms(metrics.mean([r.tools_s for r in ok])),
        "approval_wait_ms_mean": _ms(metrics.mean([r.approval_wait_s for r in ok])),
        "approvals": sum(r.approvals for r in ok),
        "overhead_ms_mean": _ms(metrics.mean([r.overhead_s for r in ok])),
        "overhead_ms_p90": _ms(metrics.percentile([r.overhead_s for r in ok], 90)),
        "tool_validity_%": round(100 * sum(tool_checked) / len(tool_checked), 1)
        if tool_checked
        else math.nan,
        "answer_correct_%": round(100 * sum(checked) / len(checked), 1) if checked else math.nan,
        "duration_s": round(duration, 3),
    }
    row |= _tool_server_columns(ok)
    row |= _health_columns(health)
    server_errors = sum(1 for r in records if r.error is not None and r.error_source == "server")
    return LevelSummary(phase, level, row, health, _top_errors(r.error for r in records), server_errors)


TOOL_SERVER_PREFIX = "tools_ms_mean_"
"""Columns `tools_ms_mean_<server>`: a run's mean time in that server's tools (0 for runs without);
`tool_call_ms_mean_<server>`: the mean time of one of its calls."""
TOOL_CALL_PREFIX = "tool_call_ms_mean_"


def _tool_server_columns(ok: Sequence[AgentRecord]) -> dict[str, Value]:
    columns: dict[str, Value] = {}
    for server in sorted({s for r in ok for s in r.tools_by_server}):
        seconds = [r.tools_by_server.get(server, 0.0) for r in ok]
        calls = sum(r.tool_calls_by_server.get(server, 0) for r in ok)
        columns[TOOL_SERVER_PREFIX + server] = _ms(metrics.mean(seconds))
        columns[TOOL_CALL_PREFIX + server] = _ms(sum(seconds) / calls) if calls else math.nan
    return columns


def _count_columns(phase: str, level: float, total: int, succeeded: int) -> dict[str, Value]:
    """A row's first columns: its level, then how many requests ran, succeeded and failed."""
    errors = total - succeeded
    return {
        FIRST_COLUMN.get(phase, "level"): level,
        "total_requests": total,
        "success_count": succeeded,
        "error_count": errors,
        "error_rate_%": round(100 * errors / total, 2) if total else 0.0,
    }


def _health_columns(health: GeneratorHealth) -> dict[str, Value]:
    return {
        "achieved_rate": health.achieved_rate if health.achieved_rate is not None else math.nan,
        "late_requests": health.late_requests,
        "dispatch_lag_p99_ms": health.dispatch_lag_p99_ms,
        "loop_lag_p99_ms": health.loop_lag_p99_ms,
        "loop_lag_max_ms": health.loop_lag_max_ms,
        "clock": health.clock,
        "reliable": "yes" if health.reliable else "no: " + "; ".join(health.problems),
    }


def _top_errors(errors: Iterable[str | None]) -> dict[str, int]:
    counts = Counter(e[:200] for e in errors if e)
    return dict(counts.most_common(5))
