"""The terminal: live progress while a level runs (rich), one line per finished level, a final table."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bench.phases import LevelPlan
from bench.runner import LevelResult, RunResult
from bench.summary import TOOL_SERVER_PREFIX, LevelSummary

_REFRESH_S = 0.25
_REASON_CHARS = 160
_REASONS_SHOWN = 3


def _f(value: object, digits: int = 1) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:,.{digits}f}"
    return str(value)


def inert(text: str, limit: int = _REASON_CHARS) -> str:
    """Server-supplied text made safe to print: bounded, one line, no control characters (a terminal
    would obey escape sequences) and no rich markup."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text[: limit + 1])
    flat = " ".join(flat.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return escape(flat)


def error_lines(summary: LevelSummary, shown: int = _REASONS_SHOWN, rest: bool = True) -> list[str]:
    """The level's most common failure reasons, one line each with its count (markup-safe); with
    `rest`, a last line counting the failures not shown."""
    top = list(summary.errors.items())[:shown]
    lines = [f"  [red]{count} ×[/red] {inert(reason)}" for reason, count in top]
    unlisted = summary.error_count - sum(count for _, count in top)
    if rest and unlisted > 0:
        lines.append(f"  … {unlisted} more with other reasons (results.json has every request)")
    return lines


def verdict_cell(summary: LevelSummary) -> str:
    """The 'bench ok' cell: plain yes only when the numbers are the server's and nothing else's."""
    verdict = escape(summary.verdict())
    return verdict if summary.trusted else f"[yellow]{verdict}[/yellow]"


class ConsoleProgress:
    """Progress for `run_benchmark`; redraws from a loop timer, never from a thread (no extra loop lag)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live: Live | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._plan: LevelPlan | None = None
        self._total = self._done = 0
        self._started = 0.0

    def level_started(self, plan: LevelPlan, total: int) -> None:
        self._plan, self._total, self._done, self._started = plan, total, 0, time.monotonic()
        if self.console.is_terminal and self._live is None:
            self._live = Live(self._render(), console=self.console, auto_refresh=False, transient=True)
            self._live.start()
            self._tick()

    def _tick(self) -> None:
        if self._live is None:
            return
        self._live.update(self._render(), refresh=True)
        self._timer = asyncio.get_running_loop().call_later(_REFRESH_S, self._tick)

    def _render(self) -> Text:
        plan = self._plan
        if plan is None:
            return Text("")
        share = self._done / self._total if self._total else 1.0
        bar = "█" * int(share * 30) + "░" * (30 - int(share * 30))
        elapsed = time.monotonic() - self._started
        return Text.assemble(
            (f"{plan.phase:<11}", "bold cyan"),
            f" level {plan.level:g}  ",
            (bar, "green"),
            f" {self._done}/{self._total}  {elapsed:5.1f}s",
        )

    def request_done(self) -> None:
        self._done += 1

    def level_finished(self, summary: LevelSummary) -> None:
        row = summary.row
        if "ttft_p50_ms" in row:
            detail = (
                f"TTFT p50 {_f(row['ttft_p50_ms'])} ms · TPOT p50 {_f(row['tpot_p50_ms'], 2)} ms · "
                f"E2E p50 {_f(row['latency_p50_ms'])} ms · {_f(row['throughput_tokens_per_sec'])} tok/s"
            )
        else:
            detail = (
                f"1st answer token p50 {_f(row.get('first_answer_token_p50_ms'))} ms · total p50 "
                f"{_f(row.get('total_p50_ms'))} ms · chatstack {_f(row.get('overhead_ms_mean'))} ms"
            )
        errors = f" · [red]{summary.error_count} errors[/red]" if summary.error_count else ""
        flag = (
            "" if summary.health.reliable else f" · [yellow]⚠ {'; '.join(summary.health.problems)}[/yellow]"
        )
        self.console.print(f"[bold]{summary.phase}[/bold] {summary.level:g}: {detail}{errors}{flag}")
        for line in error_lines(summary, shown=1, rest=False):
            self.console.print(line)

    def note(self, text: str) -> None:
        self.console.print(f"[yellow]{text}[/yellow]")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._live is not None:
            self._live.stop()
            self._live = None


def summary_tables(result: RunResult) -> list[Table]:
    """One table per phase: the numbers a reader looks at first."""
    tables = []
    agent = result.config.mode == "agent"
    columns = (
        [
            ("requests", "total_requests"),
            ("err %", "error_rate_%"),
            ("1st event p50", "first_event_p50_ms"),
            ("1st answer p50", "first_answer_token_p50_ms"),
            ("total p50", "total_p50_ms"),
            ("total p90", "total_p90_ms"),
            ("LLM ms", "llm_ms_mean"),
            ("tools ms", "tools_ms_mean"),
            ("approval ms", "approval_wait_ms_mean"),
            ("chatstack ms", "overhead_ms_mean"),
            ("correct %", "answer_correct_%"),
            ("runs/s", "runs_per_sec"),
        ]
        if agent
        else [
            ("requests", "total_requests"),
            ("err %", "error_rate_%"),
            ("TTFT p50", "ttft_p50_ms"),
            ("TTFT p90", "ttft_p90_ms"),
            ("TPOT p50", "tpot_p50_ms"),
            ("ITL p50", "itl_p50_ms"),
            ("E2E p50", "latency_p50_ms"),
            ("E2E p90", "latency_p90_ms"),
            ("req/s", "requests_per_sec"),
            ("tok/s", "throughput_tokens_per_sec"),
        ]
    )
    for phase in ("baseline", "concurrency", "rate"):
        levels = result.phase(phase)
        if not levels:
            continue
        table = Table(title=f"{result.config.name}: {phase} (ms)", title_justify="left")
        table.add_column(phase, justify="right")
        shown = columns + (_tool_server_columns(levels) if agent else [])
        for label, _ in shown:
            table.add_column(label, justify="right")
        table.add_column("loop lag p99", justify="right")
        table.add_column("bench ok", justify="left")
        for level in levels:
            row = level.summary.row
            table.add_row(
                f"{level.plan.level:g}",
                *(_f(row.get(key, math.nan), 1 if key != "requests_per_sec" else 3) for _, key in shown),
                _f(level.summary.health.loop_lag_p99_ms, 2),
                verdict_cell(level.summary),
            )
        tables.append(table)
    return tables


def _tool_server_columns(levels: Sequence[LevelResult]) -> list[tuple[str, str]]:
    """A column per tool server any level's runs used (`builtin`, MCP servers): its mean time per run."""
    servers = sorted(
        {
            key.removeprefix(TOOL_SERVER_PREFIX)
            for level in levels
            for key in level.summary.row
            if key.startswith(TOOL_SERVER_PREFIX)
        }
    )
    return [(f"{server} tools ms", TOOL_SERVER_PREFIX + server) for server in servers]


def error_report(result: RunResult) -> list[str]:
    """After the tables: why requests failed, per level that had failures (markup-safe lines)."""
    lines: list[str] = []
    for level in result.levels:
        summary = level.summary
        if summary.error_count:
            total = int(summary.row.get("total_requests", 0))
            lines.append(
                f"[bold]{level.plan.phase} {level.plan.level:g}[/bold]: "
                f"[red]{summary.error_count} of {total} requests failed[/red], {summary.error_origin()}; "
                "most common reasons:"
            )
            lines += error_lines(summary)
    return lines
