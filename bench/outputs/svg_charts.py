"""Small inline-SVG charts (lines, grouped bars, scatter with a fitted line) for the HTML report.

Hand-rolled rather than a charting library so that a report is a single small file that opens
anywhere offline. Every mark carries `data-tip` (shown by the report's script) and a `<title>` (the
browser's own tooltip), and the class `run-N` so that the legend can hide a run everywhere at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#2E86DE", "#E74C3C", "#27AE60", "#8E44AD", "#E67E22", "#16A085", "#7F8C8D", "#C0392B")
WIDTH, HEIGHT = 560, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 36, 46


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    tip: str
    flagged: bool = False
    """Drawn with a warning ring: the bench's own timing was not reliable for this point."""


@dataclass(slots=True)
class Series:
    name: str
    run: int
    points: list[Point] = field(default_factory=list)
    dash: str = ""
    """An SVG stroke-dasharray ("" for a solid line): p90 is dashed, a third series dotted."""

    @property
    def color(self) -> str:
        return PALETTE[self.run % len(PALETTE)]


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `high` (steps of 1, 2 or 5 x 10^k)."""
    if not math.isfinite(high) or high <= 0:
        return [0.0, 1.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [0.0]
    while ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:g}" if abs(value) >= 0.01 else f"{value:.1e}"


def _frame(title: str, x_label: str, y_label: str, ticks: Sequence[float], body: str, x_axis: str) -> str:
    plot_h = HEIGHT - TOP - BOTTOM
    top = ticks[-1]
    grid = []
    for tick in ticks:
        y = TOP + plot_h - plot_h * tick / top
        grid.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{_fmt(tick)}</text>'
        )
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" class="chart" role="img" aria-label="{escape(title)}">'
        f'<text x="{WIDTH / 2}" y="20" class="title" text-anchor="middle">{escape(title)}</text>'
        + "".join(grid)
        + f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" class="axis"/>'
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" y2="{HEIGHT - BOTTOM}" class="axis"/>'
        + x_axis
        + f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 8}" class="label" text-anchor="middle">'
        f"{escape(x_label)}</text>"
        f'<text transform="translate(16 {(TOP + HEIGHT - BOTTOM) / 2}) rotate(-90)" class="label" '
        f'text-anchor="middle">{escape(y_label)}</text>' + body + "</svg>"
    )


def _categories(series: Sequence[Series]) -> list[float]:
    return sorted({p.x for s in series for p in s.points})


def _mark(x: float, y: float, point: Point, s: Series, radius: float = 4) -> str:
    tip = escape(point.tip, quote=True)
    ring = (
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius + 4}" class="flag run-{s.run}"/>'
        if point.flagged
        else ""
    )
    return (
        ring + f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{s.color}" class="mark run-{s.run}" '
        f'data-tip="{tip}"><title>{tip}</title></circle>'
    )


def _category_axis(categories: Sequence[float], position: dict[float, float]) -> str:
    return "".join(
        f'<text x="{position[c]:.1f}" y="{HEIGHT - BOTTOM + 16}" class="tick" text-anchor="middle">'
        f"{_fmt(c)}</text>"
        for c in categories
    )


def _y_top(series: Sequence[Series], ceiling: float | None = None) -> list[float]:
    values = [p.y for s in series for p in s.points if math.isfinite(p.y)]
    if ceiling is not None:
        return nice_ticks(ceiling)
    return nice_ticks(max(values) * 1.05 if values else 1.0)


def line_chart(title: str, x_label: str, y_label: str, series: Sequence[Series]) -> str:
    """Lines over categorical x positions (concurrency levels, rates), one per series."""
    categories = _categories(series)
    if not categories:
        return ""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / len(categories)
    position = {c: LEFT + step * (i + 0.5) for i, c in enumerate(categories)}
    ticks = _y_top(series)
    body = []
    for s in series:
        points = [p for p in s.points if math.isfinite(p.y)]
        coords = [(position[p.x], TOP + plot_h - plot_h * p.y / ticks[-1]) for p in points]
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        body.append(
            f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="2"{dash} '
            f'class="run-{s.run}"/>'
        )
        body += [_mark(x, y, p, s) for (x, y), p in zip(coords, points, strict=True)]
    return _frame(title, x_label, y_label, ticks, "".join(body), _category_axis(categories, position))


def bar_chart(
    title: str, x_label: str, y_label: str, series: Sequence[Series], ceiling: float | None = None
) -> str:
    """Grouped bars over categorical x positions, one bar per series in each group (axis up to `ceiling`)."""
    categories = _categories(series)
    if not categories:
        return ""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / len(categories)
    position = {c: LEFT + step * (i + 0.5) for i, c in enumerate(categories)}
    ticks = _y_top(series)
    width = step * 0.8 / max(1, len(series))
    if ceiling is not None:
        ticks = _y_top(series, ceiling)
    body = []
    for k, s in enumerate(series):
        for p in s.points:
            if not math.isfinite(p.y):
                continue
            height = plot_h * p.y / ticks[-1]
            x = position[p.x] - step * 0.4 + k * width
            tip = escape(p.tip, quote=True)
            flag = " flagged" if p.flagged else ""
            body.append(
                f'<rect x="{x:.1f}" y="{TOP + plot_h - height:.1f}" width="{width * 0.92:.1f}" '
                f'height="{height:.1f}" fill="{s.color}" class="mark run-{s.run}{flag}" data-tip="{tip}">'
                f"<title>{tip}</title></rect>"
            )
    return _frame(title, x_label, y_label, ticks, "".join(body), _category_axis(categories, position))


def scatter_chart(
    title: str,
    x_label: str,
    y_label: str,
    series: Sequence[Series],
    fits: Sequence[tuple[int, float, float]] = (),
) -> str:
    """Points on a numeric x axis, with optional fitted lines `(run, intercept, slope)`."""
    xs = [p.x for s in series for p in s.points]
    if not xs:
        return ""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    x_ticks = nice_ticks(max(xs) * 1.05)
    ticks = _y_top(series)

    def sx(x: float) -> float:
        return LEFT + plot_w * x / x_ticks[-1]

    def sy(y: float) -> float:
        return TOP + plot_h - plot_h * y / ticks[-1]

    body = []
    for run, intercept, slope in fits:
        color = PALETTE[run % len(PALETTE)]
        end = x_ticks[-1]
        y0, y1 = max(0.0, min(intercept, ticks[-1])), max(0.0, min(intercept + slope * end, ticks[-1]))
        body.append(
            f'<line x1="{sx(0):.1f}" y1="{sy(y0):.1f}" x2="{sx(end):.1f}" y2="{sy(y1):.1f}" stroke="{color}" '
            f'stroke-dasharray="5 4" class="run-{run}"/>'
        )
    for s in series:
        body += [_mark(sx(p.x), sy(p.y), p, s, 3.5) for p in s.points if math.isfinite(p.y)]
    axis = "".join(
        f'<text x="{sx(t):.1f}" y="{HEIGHT - BOTTOM + 16}" class="tick" text-anchor="middle">{_fmt(t)}</text>'
        for t in x_ticks
    )
    return _frame(title, x_label, y_label, ticks, "".join(body), axis)
