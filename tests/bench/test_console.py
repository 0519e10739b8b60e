"""What the terminal says after a run: why requests failed, whether the bench vouches for a level, and
which files the run wrote (issue 11)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from rich.console import Console

from bench.outputs.console import error_lines, verdict_cell
from bench.summary import GeneratorHealth, LevelSummary
from tests.bench.conftest import ReferenceFactory, bench_process
from tests.support.processes import free_port


def printed(lines: list[str]) -> str:
    console = Console(record=True, width=200, force_terminal=False)
    for line in lines:
        console.print(line)
    return console.export_text()


def failing_level(errors: dict[str, int], count: int, server_errors: int = 0) -> LevelSummary:
    row: dict[str, float | int | str] = {
        "total_requests": count,
        "error_count": count,
        "ttft_p50_ms": math.nan,
    }
    return LevelSummary("concurrency", 4, row, GeneratorHealth(), errors, server_errors)


def test_error_reasons_are_shown_inert_and_bounded() -> None:
    hostile = "HTTP 500: \x1b[2J\x1b]0;owned\x07[bold red]fake[/bold red]\nsecond line " + "x" * 500
    level = failing_level({hostile: 7, "connect failed: refused": 2, "a": 1, "b": 1}, count=12)
    text = printed(error_lines(level))
    lines = text.splitlines()
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "[bold red]fake[/bold red]" in lines[0]  # markup from the server is shown, not obeyed
    assert lines[0].startswith("  7 × HTTP 500:")
    assert len(lines[0]) < 200
    assert lines[1] == "  2 × connect failed: refused"
    assert lines[2] == "  1 × a"
    assert lines[3] == "  … 2 more with other reasons (results.json has every request)"


def test_a_level_with_unexplained_errors_is_not_called_ok() -> None:
    unsure = failing_level({"the server closed the connection without answering": 5}, count=5)
    answered = failing_level({"HTTP 503: busy": 5}, count=5, server_errors=5)
    assert printed([verdict_cell(unsure)]).strip() == "unsure: 5 transport errors"
    assert printed([verdict_cell(answered)]).strip() == "yes: server errors"


BENCH_ARGS = [
    "openai", "--model", "reference", "--phases", "concurrency", "--concurrency", "2", "--requests", "6",
    "--dataset", "fixed", "--input-tokens", "10", "--max-tokens", "4", "--warmup", "0", "--tokenizer",
    "estimate",
]  # fmt: skip


@pytest.mark.slow
def test_when_every_request_fails_in_transport_the_terminal_says_why(tmp_path: Path) -> None:
    run = bench_process([*BENCH_ARGS, "--base-url", f"http://127.0.0.1:{free_port()}/v1"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = " ".join(run.stdout.split())  # the table may wrap; words stay in order
    assert (
        "concurrency 2: 6 of 6 requests failed, 6 of them in transport (connection, framing or timeout), "
        "which can be the server's fault or the bench's; most common reasons:"
    ) in out
    assert "6 × connect to 127.0.0.1:" in out
    assert "Connection refused" in out
    assert "│ unsure: 6 transport errors │" in out
    assert "│ yes" not in out
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["concurrency.csv", "report.html", "results.json"]
    assert f"Results: {tmp_path}/ (concurrency.csv, results.json, report.html)" in out
    assert "baseline.csv" not in out
    assert "rate.csv" not in out


@pytest.mark.slow
def test_errors_the_server_answered_are_named_as_the_servers(
    reference_servers: ReferenceFactory, tmp_path: Path
) -> None:
    server = reference_servers(ttft_ms=5, tpot_ms=1, output_tokens=4)
    wrong_path = server.url.removesuffix("/v1") + "/nowhere"
    run = bench_process([*BENCH_ARGS, "--base-url", wrong_path], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = " ".join(run.stdout.split())
    assert '6 × HTTP 404: {"error": {"message": "not found"}}' in out
    assert "│ yes: server errors │" in out
    assert "6 of 6 requests failed, each one the server's own answer" in out
