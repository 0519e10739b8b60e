"""The HTML report: self-contained, several runs side by side, unreliable levels marked."""

from __future__ import annotations

import re
from typing import Any

from bench.outputs.html_report import render_report


def level(phase: str, value: float, ttft: float, reliable: bool = True) -> dict[str, Any]:
    return {
        "phase": phase,
        "level": value,
        "summary": {
            "ttft_p50_ms": ttft,
            "ttft_p90_ms": ttft * 1.5,
            "latency_p50_ms": 900.0,
            "latency_p90_ms": 1200.0,
            "tpot_p50_ms": 20.0,
            "tpot_p90_ms": 25.0,
            "throughput_tokens_per_sec": 100 * value,
            "requests_per_sec": value,
            "error_rate_%": 0.0,
            "achieved_rate": value,
            "loop_lag_p99_ms": 0.4,
        },
        "health": {"reliable": reliable, "problems": [] if reliable else ["achieved 5/s of the 10/s asked"]},
        "records": [],
    }


def doc(name: str, ttft: float) -> dict[str, Any]:
    return {
        "name": name,
        "mode": "openai",
        "config": {"base_url": "http://x/v1", "model": name, "dataset": "sharegpt"},
        "environment": {"cpus": 2},
        "notes": [],
        "prefill_fit": None,
        "levels": [level("concurrency", c, ttft * c) for c in (1, 2, 4)]
        + [level("rate", 1, ttft), level("rate", 10, ttft * 9, reliable=False)],
    }


def test_two_runs_side_by_side_in_one_self_contained_file() -> None:
    html = render_report([doc("qwen", 400.0), doc("deepseek-pd", 406.0)])
    assert html.startswith("<!doctype html>")
    assert html.count("<svg") >= 10
    assert 'data-run="0"' in html
    assert 'data-run="1"' in html
    assert "qwen" in html
    assert "deepseek-pd" in html
    assert "TTFT by concurrency" in html
    assert "Success rate" in html
    assert "Achieved vs requested rate" in html
    assert 'class="flag run-' in html
    assert "achieved 5/s of the 10/s asked" in html
    # nothing loaded from elsewhere
    assert not re.search(r'(src|href)=["\']?https?:', html)
