"""`python -m bench.mcp_overhead`: its arithmetic on known timings, and a short real run against the
published MCP servers (server-everything over stdio and streamable HTTP, mcp-server-time) and through
chatstack's agent runs."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
from pathlib import Path

import pytest

from bench.mcp_overhead import TARGETS, Samples, summarise
from tests.support.processes import BIN, ROOT


def test_summary_of_known_timings() -> None:
    samples = Samples(
        bare_ms=[1.0, 2.0, 3.0, 4.0, 100.0],
        wrapped_ms=[1.5, 2.5, 3.5, 4.5, 90.0],
        inner_ms=[1.4, 2.4, 3.4, 4.4, 89.0],
        bare_first=[True, False, True, False, True],
    )
    result = summarise(TARGETS["everything-stdio"], samples)
    assert result.calls == 5
    assert result.bare.p50_ms == 3.0
    assert result.wrapped.p50_ms == 3.5
    assert result.added_ms == 0.5  # difference of medians
    assert result.paired.p50_ms == 0.5  # median of [0.5, 0.5, 0.5, 0.5, -10]
    assert result.paired.p99_ms == 0.5
    assert result.own.p50_ms == pytest.approx(0.1)
    assert result.own.p99_ms == pytest.approx(0.964)  # between 0.1 and 1.0, interpolated
    assert result.ratio == pytest.approx(3.5 / 3.0, abs=1e-4)
    assert result.within_target


def test_unknown_target_is_refused() -> None:
    done = subprocess.run(
        [str(BIN / "python"), "-m", "bench.mcp_overhead", "--targets", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown target(s) ['nope']" in done.stderr


@pytest.mark.slow
def test_short_run_writes_sane_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    args = ["--calls", "20", "--warmup", "3", "--agent-runs", "3", "--out", str(out)]
    done = subprocess.run(
        [str(BIN / "python"), "-m", "bench.mcp_overhead", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MCP call overhead" in done.stdout
    document = json.loads((out / "results.json").read_text())
    assert document["options"] == {"calls": 20, "warmup": 3, "targets": list(TARGETS), "agent_runs": 3}
    results = {r["target"]: r for r in document["results"]}
    assert set(results) == set(TARGETS)
    for result in results.values():
        assert result["calls"] == 20
        for key in ("bare", "wrapped"):
            assert 0 < result[key]["p50_ms"] <= result[key]["p90_ms"] <= result[key]["p99_ms"] < 10_000
        # chatstack's own time inside a wrapped call is never negative, and small next to a call
        assert 0 <= result["own"]["p50_ms"] <= result["own"]["p99_ms"]
        assert result["own"]["p50_ms"] < result["wrapped"]["p50_ms"]
        assert result["ratio"] > 0
    # one MCP call inside real agent runs (chatstack over HTTP, the scripted backend calling `echo`)
    in_agent = document["in_agent"]
    assert in_agent["runs"] == len(in_agent["durations_ms"]) == 3
    assert all(0 < ms < 10_000 for ms in in_agent["durations_ms"])
    assert in_agent["bare_p50_ms"] == results["everything-stdio"]["bare"]["p50_ms"]
    assert in_agent["added_ms"] == pytest.approx(
        in_agent["tool_step"]["p50_ms"] - in_agent["bare_p50_ms"], abs=1e-3
    )
    assert "In agent runs (3)" in done.stdout
    with (out / "calls.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 20 * len(TARGETS)
    assert {row["target"] for row in rows} == set(TARGETS)
    for row in rows:
        bare, wrapped, own = float(row["bare_ms"]), float(row["wrapped_ms"]), float(row["own_ms"])
        assert bare > 0
        assert wrapped > 0
        assert 0 <= own <= wrapped
        assert float(row["diff_ms"]) == pytest.approx(wrapped - bare, abs=1e-3)
    # the rounds alternate which call goes first, so drift and order effects cancel
    for target in TARGETS:
        order = [row["bare_first"] for row in rows if row["target"] == target]
        assert all(a != b for a, b in itertools.pairwise(order)), order
