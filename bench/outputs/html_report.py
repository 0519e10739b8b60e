"""One self-contained HTML report for one or more runs, side by side (e.g. Qwen vs DeepSeek with P/D).

The charts follow the seed blog: TTFT p50/p90, throughput, latency p50/p90 and success rate against
concurrency and against request rate; plus the prefill fit of the baseline and the bench's own health
(event-loop lag, achieved rate), with levels the bench could not time reliably ringed in red.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Any, NamedTuple

from bench.outputs.svg_charts import PALETTE, Point, Series, bar_chart, line_chart, scatter_chart

Doc = dict[str, Any]
DASHED, DOTTED = "6 4", "2 3"

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2d3d;
background:#f5f7fa}
header{background:#2C3E50;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
main{padding:8px 28px 40px;max-width:1240px}
h2{margin:28px 0 8px;font-size:18px;border-bottom:1px solid #d5dde5}
.legend{display:flex;gap:10px;flex-wrap:wrap;margin:12px 0}
.legend button{border:1px solid #c8d1db;background:#fff;border-radius:16px;padding:4px 12px;
cursor:pointer;font:inherit}
.legend button.off{opacity:.4;text-decoration:line-through}
.swatch{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:6px}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:14px}
.card{background:#fff;border:1px solid #e1e6ec;border-radius:8px;padding:6px}
svg.chart{width:100%;height:auto}svg .grid{stroke:#edf0f3}svg .axis{stroke:#8a99a8}
svg .tick{font-size:11px;fill:#5a6b7b}svg .label{font-size:12px;fill:#3d4d5c}
svg .title{font-size:14px;font-weight:600;fill:#1f2d3d}
svg .flag{fill:none;stroke:#E74C3C;stroke-width:2}svg rect.flagged{stroke:#E74C3C;stroke-width:2}
svg .mark{cursor:pointer}
table{border-collapse:collapse;background:#fff;font-size:12.5px;margin:6px 0 14px}
th,td{border:1px solid #e1e6ec;padding:4px 8px;text-align:right}th{background:#eef2f6}
td.l,th.l{text-align:left}tr.bad td{background:#fdecea}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:10px}
.kpi{background:#fff;border:1px solid #e1e6ec;border-radius:8px;padding:10px 14px}
.kpi b{display:block;font-size:20px}.muted{color:#6b7b8b}
.note{background:#fff8e1;border-left:4px solid #f1c40f;padding:6px 10px;margin:6px 0}
#tip{position:fixed;pointer-events:none;background:#1f2d3d;color:#fff;padding:5px 8px;border-radius:4px;
font-size:12px;display:none;white-space:pre;z-index:9}
"""

_SCRIPT = """
const tip=document.getElementById('tip');
document.addEventListener('mouseover',e=>{const t=e.target.closest('[data-tip]');if(!t)return;
tip.textContent=t.dataset.tip;tip.style.display='block'});
document.addEventListener('mousemove',e=>{tip.style.left=(e.clientX+12)+'px';tip.style.top=(e.clientY+12)+'px'});
document.addEventListener('mouseout',e=>{if(e.target.closest('[data-tip]'))tip.style.display='none'});
document.querySelectorAll('.legend button').forEach(b=>b.addEventListener('click',()=>{
b.classList.toggle('off');document.body.classList.toggle('hide-run-'+b.dataset.run)}));
"""


def _levels(doc: Doc, phase: str) -> list[Doc]:
    return [level for level in doc.get("levels", []) if level.get("phase") == phase]


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def _series(
    docs: Sequence[Doc],
    phase: str,
    key: str,
    label: str,
    unit: str,
    dash: str = "",
    value: Callable[[Doc], float] | None = None,
) -> list[Series]:
    result = []
    for run, doc in enumerate(docs):
        series = Series(f"{doc['name']} {label}", run, dash=dash)
        for level in _levels(doc, phase):
            y = value(level) if value else _num(level["summary"].get(key))
            flagged = not level.get("health", {}).get("reliable", True)
            note = "\n⚠ bench timing unreliable: " + "; ".join(level["health"]["problems"]) if flagged else ""
            tip = f"{doc['name']} · {phase} {level['level']:g}\n{label}: {y:,.2f} {unit}{note}"
            series.points.append(Point(float(level["level"]), y, tip, flagged))
        if series.points:
            result.append(series)
    return result


def _success(level: Doc) -> float:
    return 100 - _num(level["summary"].get("error_rate_%"))


class _Line(NamedTuple):
    """One line of a sweep chart: a summary key, its label and unit in tooltips, its dash pattern."""

    key: str
    label: str
    unit: str
    dash: str = ""


class _Chart(NamedTuple):
    """One chart of a sweep; `{x}` in the title stands for the x axis' name."""

    draw: Callable[[str, str, str, Sequence[Series]], str]
    title: str
    y_label: str
    lines: list[_Line]


_AGENT_CHARTS = [
    _Chart(
        line_chart,
        "Time to first answer token by {x}",
        "ms",
        [
            _Line("first_answer_token_p50_ms", "p50", "ms"),
            _Line("first_answer_token_p90_ms", "p90", "ms", DASHED),
        ],
    ),
    _Chart(bar_chart, "Agent runs per second by {x}", "runs/s", [_Line("runs_per_sec", "runs/s", "runs/s")]),
    _Chart(
        line_chart,
        "Total run time by {x}",
        "ms",
        [_Line("total_p50_ms", "p50", "ms"), _Line("total_p90_ms", "p90", "ms", DASHED)],
    ),
    _Chart(
        line_chart,
        "Mean time: model (solid), tools (dashed), chatstack (dotted)",
        "ms",
        [
            _Line("llm_ms_mean", "model", "ms"),
            _Line("tools_ms_mean", "tools", "ms", DASHED),
            _Line("overhead_ms_mean", "chatstack", "ms", DOTTED),
        ],
    ),
]
_OPENAI_CHARTS = [
    _Chart(
        line_chart,
        "TTFT by {x}",
        "ms",
        [_Line("ttft_p50_ms", "TTFT p50", "ms"), _Line("ttft_p90_ms", "TTFT p90", "ms", DASHED)],
    ),
    _Chart(
        bar_chart,
        "Output throughput by {x}",
        "tokens/s",
        [_Line("throughput_tokens_per_sec", "throughput", "tokens/s")],
    ),
    _Chart(
        line_chart,
        "Total latency by {x}",
        "ms",
        [_Line("latency_p50_ms", "latency p50", "ms"), _Line("latency_p90_ms", "latency p90", "ms", DASHED)],
    ),
    _Chart(
        line_chart,
        "Time per output token by {x}",
        "ms",
        [_Line("tpot_p50_ms", "TPOT p50", "ms"), _Line("tpot_p90_ms", "TPOT p90", "ms", DASHED)],
    ),
]
_RATE_CHART = _Chart(
    line_chart,
    "Achieved vs requested rate",
    "requests/s",
    [_Line("achieved_rate", "achieved", "req/s"), _Line("requests_per_sec", "completed", "req/s", DASHED)],
)
_LOOP_LAG_CHART = _Chart(
    line_chart, "The bench's own event-loop lag (p99)", "ms", [_Line("loop_lag_p99_ms", "loop lag p99", "ms")]
)


def _chart(docs: Sequence[Doc], phase: str, x_label: str, chart: _Chart) -> str:
    series = [
        one
        for line in chart.lines
        for one in _series(docs, phase, line.key, line.label, line.unit, line.dash)
    ]
    return chart.draw(chart.title.format(x=x_label.lower()), x_label, chart.y_label, series)


def _sweep_section(docs: Sequence[Doc], phase: str, x_label: str) -> str:
    if not any(_levels(doc, phase) for doc in docs):
        return ""
    specs = _AGENT_CHARTS if docs[0].get("mode") == "agent" else _OPENAI_CHARTS
    charts = [_chart(docs, phase, x_label, spec) for spec in specs]
    charts.append(
        bar_chart("Success rate", x_label, "%", _series(docs, phase, "", "success", "%", value=_success), 100)
    )
    if phase == "rate":
        charts.append(_chart(docs, phase, x_label, _RATE_CHART))
    charts.append(_chart(docs, phase, x_label, _LOOP_LAG_CHART))
    title = {"concurrency": "Concurrency sweep (closed loop)", "rate": "Sustained rate (open loop)"}[phase]
    cards = "".join(f'<div class="card">{c}</div>' for c in charts if c)
    return f'<h2>{title}</h2><div class="grid2">{cards}</div>' + _tables(docs, phase)


_TABLE_COLUMNS = {
    "openai": [
        ("total_requests", "requests"),
        ("error_rate_%", "errors %"),
        ("ttft_p50_ms", "TTFT p50"),
        ("ttft_p90_ms", "TTFT p90"),
        ("tpot_p50_ms", "TPOT p50"),
        ("itl_p50_ms", "ITL p50"),
        ("latency_p50_ms", "E2E p50"),
        ("latency_p90_ms", "E2E p90"),
        ("requests_per_sec", "req/s"),
        ("throughput_tokens_per_sec", "tok/s"),
        ("goodput_rps", "goodput"),
        ("achieved_rate", "achieved/s"),
        ("loop_lag_p99_ms", "loop lag p99"),
    ],
    "agent": [
        ("total_requests", "runs"),
        ("error_rate_%", "errors %"),
        ("first_event_p50_ms", "1st event p50"),
        ("first_answer_token_p50_ms", "1st answer tok p50"),
        ("total_p50_ms", "total p50"),
        ("total_p90_ms", "total p90"),
        ("llm_calls_mean", "LLM calls"),
        ("tool_calls_mean", "tool calls"),
        ("llm_ms_mean", "LLM ms"),
        ("tools_ms_mean", "tools ms"),
        ("approval_wait_ms_mean", "approval ms"),
        ("overhead_ms_mean", "chatstack ms"),
        ("tool_validity_%", "tools ok %"),
        ("answer_correct_%", "correct %"),
        ("loop_lag_p99_ms", "loop lag p99"),
    ],
}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:,.2f}".rstrip("0").rstrip(".")
    return escape(str(value)) if value is not None else "–"


def _tables(docs: Sequence[Doc], phase: str) -> str:
    parts = []
    for doc in docs:
        levels = _levels(doc, phase)
        if not levels:
            continue
        columns = _TABLE_COLUMNS["agent" if doc.get("mode") == "agent" else "openai"]
        head = "".join(f"<th>{escape(label)}</th>" for _, label in columns)
        rows = []
        for level in levels:
            reliable = level.get("health", {}).get("reliable", True)
            cells = "".join(f"<td>{_cell(level['summary'].get(key))}</td>" for key, _ in columns)
            problems = "; ".join(level.get("health", {}).get("problems", []))
            flag = "" if reliable else f' <span title="{escape(problems, quote=True)}">⚠</span>'
            rows.append(
                f'<tr class="{"" if reliable else "bad"}">'
                f'<td class="l">{level["level"]:g}{flag}</td>{cells}</tr>'
            )
        parts.append(
            f'<p><b>{escape(doc["name"])}</b> <span class="muted">(ms unless stated)</span></p>'
            f'<table><tr><th class="l">{escape(phase)}</th>{head}</tr>{"".join(rows)}</table>'
        )
    return "".join(parts)


def _baseline_section(docs: Sequence[Doc]) -> str:
    series, fits = [], []
    for run, doc in enumerate(docs):
        s = Series(f"{doc['name']} TTFT", run)
        for level in _levels(doc, "baseline"):
            for record in level.get("records", []):
                tokens = record.get("prompt_tokens") or record.get("expected_prompt_tokens")
                times = record.get("token_times_ms") or []
                if record.get("error") or not tokens or not times or record.get("intended_at_ms") is None:
                    continue
                ttft = times[0] - record["intended_at_ms"]
                s.points.append(
                    Point(float(tokens), ttft, f"{doc['name']}\n{tokens} prompt tokens → TTFT {ttft:.1f} ms")
                )
        if s.points:
            series.append(s)
        fit = doc.get("prefill_fit")
        if fit:
            fits.append((run, float(fit["intercept_ms"]), float(fit["ms_per_token"])))
    if not series:
        return (
            "<h2>Baseline (one request at a time)</h2>" + _tables(docs, "baseline")
            if any(_levels(doc, "baseline") for doc in docs)
            else ""
        )
    notes = "".join(
        f"<li><b>{escape(doc['name'])}</b>: TTFT ≈ {doc['prefill_fit']['intercept_ms']:.1f} ms + "
        f"{doc['prefill_fit']['ms_per_token'] * 1000:.1f} µs/token → prefill ≈ "
        f"{doc['prefill_fit']['tokens_per_s']:,.0f} tokens/s (R² {doc['prefill_fit']['r_squared']:.3f})</li>"
        for doc in docs
        if doc.get("prefill_fit") and doc["prefill_fit"].get("tokens_per_s") is not None
    )
    chart = scatter_chart(
        "Sequential baseline: TTFT against prompt length", "prompt tokens", "ms", series, fits
    )
    return (
        f'<h2>Baseline (one request at a time)</h2><div class="grid2"><div class="card">{chart}</div>'
        f"<div><ul>{notes}</ul></div></div>" + _tables(docs, "baseline")
    )


def _kpis(doc: Doc) -> str:
    def best(phase: str, key: str) -> float:
        values = [_num(level["summary"].get(key)) for level in _levels(doc, phase)]
        values = [v for v in values if math.isfinite(v)]
        return max(values) if values else math.nan

    stable = [
        level["level"]
        for level in _levels(doc, "rate")
        if _num(level["summary"].get("error_rate_%")) < 1 and level.get("health", {}).get("reliable", True)
    ]
    items = []
    if doc.get("mode") == "agent":
        items.append(("Peak agent runs/s", best("concurrency", "runs_per_sec"), "runs/s"))
        items.append(("Answer correct", best("baseline", "answer_correct_%"), "%"))
    else:
        items.append(("Peak output throughput", best("concurrency", "throughput_tokens_per_sec"), "tokens/s"))
        first = _levels(doc, "concurrency")[:1]
        items.append(
            (
                "TTFT p50 at lowest concurrency",
                _num(first[0]["summary"].get("ttft_p50_ms")) if first else math.nan,
                "ms",
            )
        )
    items.append(("Max rate with <1% errors", float(max(stable)) if stable else math.nan, "req/s"))
    fit = doc.get("prefill_fit") or {}
    if fit.get("tokens_per_s") and fit.get("ms_per_token", 0) > 0 and fit.get("r_squared", 0) >= 0.5:
        items.append(("Prefill rate (fit)", float(fit["tokens_per_s"]), "tokens/s"))
    cells = "".join(
        f'<div class="kpi">{escape(label)}<b>{_cell(value)}</b><span class="muted">{unit}</span></div>'
        for label, value, unit in items
    )
    env = doc.get("environment", {})
    cfg = doc.get("config", {})
    meta = (
        f"{escape(str(cfg.get('base_url')))} · model "
        f"{escape(str(cfg.get('model') or cfg.get('backend') or '-'))}"
        f" · dataset {escape(str(cfg.get('dataset')))} · {escape(str(env.get('started_at', '')))}"
        f" · {env.get('cpus')} CPUs · receive clock: {escape(str(env.get('receive_clock')))}"
    )
    notes = "".join(f'<div class="note">{escape(n)}</div>' for n in doc.get("notes", []))
    heading = f'<h3>{escape(doc["name"])} <span class="muted">{meta}</span></h3>'
    return f'{heading}<div class="kpis">{cells}</div>{notes}'


def render_report(docs: Sequence[Doc], title: str = "chatstack bench report") -> str:
    """The whole report as one HTML string (no external resources)."""
    legend = "".join(
        f'<button data-run="{i}"><span class="swatch" style="background:{PALETTE[i % len(PALETTE)]}"></span>'
        f"{escape(doc['name'])}</button>"
        for i, doc in enumerate(docs)
    )
    hide = "".join(f".hide-run-{i} .run-{i}{{display:none}}" for i in range(len(docs)))
    sections = (
        "".join(_kpis(doc) for doc in docs)
        + _baseline_section(docs)
        + _sweep_section(docs, "concurrency", "Concurrency")
        + _sweep_section(docs, "rate", "Request rate (req/s)")
    )
    method = (
        '<h2>How to read this</h2><p class="muted">Metrics as vLLM\'s benchmark defines them: '
        "TTFT is the first "
        "chunk carrying <code>choices</code>, TPOT is (E2E − TTFT)/(output tokens − 1), ITL the gaps between "
        "chunks, E2E ends at the last data chunk; output tokens come from the server's <code>usage</code>. "
        "Latencies count from each request's intended start (no coordinated omission). Solid lines are p50, "
        "dashed p90. Points ringed in red are levels where the bench itself fell behind (late dispatches, "
        "event-loop lag, or an achieved rate below the one asked): treat them as lower bounds. "
        "Click a run in the legend to hide it.</p>"
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<style>{_STYLE}{hide}</style></head>"
        f"<body><header><h1>{escape(title)}</h1><div>{len(docs)} run(s)</div></header><main>"
        f'<div class="legend">{legend}</div>{sections}{method}</main><div id="tip"></div>'
        f"<script>{_SCRIPT}</script></body></html>"
    )
