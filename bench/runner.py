"""Runs the planned phases against a target and collects every level's records and summary."""

from __future__ import annotations

import asyncio
import gc
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Protocol

from bench.clients.clock import now
from bench.config import BenchConfig
from bench.datasets.prompts import Prompt
from bench.loop_lag import LoopLagMonitor
from bench.metrics import PrefillFit, Slo, prefill_fit
from bench.phases import LevelPlan, PromptCycle, plan_phase
from bench.records import RequestRecord
from bench.scheduler import LevelRun, closed_loop, open_loop
from bench.summary import LevelSummary, health_of
from bench.targets.base import Record, Target

# Open-loop levels start this long after they are set up, so the first arrival is not already late.
_LEAD_S = 0.05


@dataclass(slots=True)
class LevelResult:
    plan: LevelPlan
    summary: LevelSummary
    records: list[Record]
    loop_lag: list[float]
    origin: float
    """The level's start on the monotonic clock; record times are reported relative to it."""


@dataclass(slots=True)
class RunResult:
    config: BenchConfig
    environment: dict[str, Any]
    levels: list[LevelResult] = field(default_factory=list)
    prefill: PrefillFit | None = None
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    """What was sent: dataset, tokenizer, counts."""

    def phase(self, name: str) -> list[LevelResult]:
        return [level for level in self.levels if level.plan.phase == name]


class Progress(Protocol):
    def level_started(self, plan: LevelPlan, total: int) -> None: ...

    def request_done(self) -> None: ...

    def level_finished(self, summary: LevelSummary) -> None: ...

    def note(self, text: str) -> None: ...


class SilentProgress:
    def level_started(self, plan: LevelPlan, total: int) -> None:
        pass

    def request_done(self) -> None:
        pass

    def level_finished(self, summary: LevelSummary) -> None:
        pass

    def note(self, text: str) -> None:
        pass


def environment(target: Target, config: BenchConfig) -> dict[str, Any]:
    """Where and with what the run was made, for the results file."""
    loop = asyncio.get_running_loop()
    versions: dict[str, str | None] = {}
    for package in ("uvloop", "aiohttp", "httptools"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "hostname": platform.node(),
        "event_loop": f"{type(loop).__module__}.{type(loop).__name__}",
        "receive_clock": target.clock,
        "target": target.kind,
        "base_url": config.base_url,
        "packages": versions,
    }


def _stop_reason(config: BenchConfig, summary: LevelSummary, first_p90: float | None) -> str | None:
    """The breaking point (see `StopRule`), or None to go on."""
    rule = config.stop
    error_rate = float(summary.row.get("error_rate_%", 0)) / 100
    if rule.max_error_rate and error_rate > rule.max_error_rate:
        return f"error rate {error_rate:.0%} above {rule.max_error_rate:.0%}"
    key = "latency_p90_ms" if "latency_p90_ms" in summary.row else "total_p90_ms"
    p90 = float(summary.row.get(key, math.nan))
    if (
        rule.max_latency_growth
        and first_p90
        and not math.isnan(p90)
        and p90 > rule.max_latency_growth * first_p90
    ):
        growth = rule.max_latency_growth
        return f"p90 latency {p90:.0f} ms, over {growth:g}x the first level's {first_p90:.0f} ms"
    return None


async def run_level(target: Target, plan: LevelPlan, config: BenchConfig, progress: Progress) -> LevelResult:
    """Prepare, run and summarize one level."""
    prepared = await target.prepare(plan)
    progress.level_started(plan, len(plan.prompts))

    def launch(index: int, intended_at: float, done: Callable[[Any], None]) -> None:
        def counted(result: Any) -> None:
            progress.request_done()
            done(result)

        prepared.launch(index, intended_at, counted)

    monitor = LoopLagMonitor(on_tick=[target.resync_clock])
    # A full garbage collection over the records of a busy level pauses the loop for tens of
    # milliseconds: collect before, not during (reference counting still frees almost everything).
    gc.collect()
    gc.disable()
    monitor.start()
    run: LevelRun[Any]
    try:
        if plan.offsets is not None:
            run = await open_loop(launch, plan.offsets, now() + _LEAD_S, config.max_in_flight)
        else:
            run = await closed_loop(launch, plan.concurrency or 1, len(plan.prompts))
    finally:
        lag = monitor.stop()
        gc.enable()
    records = prepared.finish(run.results)
    health = health_of(
        [r.intended_at for r in records],
        [r.dispatched_at for r in records],
        lag,
        target.clock,
        config.late_threshold_ms,
        plan.target_rate,
    )
    slo = Slo(config.slo.ttft_ms, config.slo.tpot_ms, config.slo.e2e_ms)
    summary = target.summarize(plan, records, health, slo)
    progress.level_finished(summary)
    return LevelResult(plan, summary, records, lag, run.started_at)


async def run_benchmark(
    config: BenchConfig,
    target: Target,
    prompts: list[Prompt],
    progress: Progress | None = None,
    tasks: list[Prompt] | None = None,
) -> RunResult:
    """Every configured phase, in order; sweeps stop at their breaking point (see `StopRule`)."""
    progress = progress or SilentProgress()
    await target.open()
    try:
        result = RunResult(config, environment(target, config))
        cycle = PromptCycle(prompts)
        for phase in config.phases:
            first_p90: float | None = None
            for plan in plan_phase(phase, config, cycle, tasks):
                level = await run_level(target, plan, config, progress)
                if phase == "warmup":
                    continue
                result.levels.append(level)
                if phase not in ("concurrency", "rate"):
                    continue
                reason = _stop_reason(config, level.summary, first_p90)
                if first_p90 is None:
                    key = "latency_p90_ms" if "latency_p90_ms" in level.summary.row else "total_p90_ms"
                    value = float(level.summary.row.get(key, math.nan))
                    first_p90 = None if math.isnan(value) else value
                if reason:
                    note = f"{phase} sweep stopped after {plan.level:g}: {reason}"
                    result.notes.append(note)
                    progress.note(note)
                    break
        baseline = [
            r for level in result.phase("baseline") for r in level.records if isinstance(r, RequestRecord)
        ]
        result.prefill = prefill_fit(baseline)
        return result
    finally:
        await target.close()
