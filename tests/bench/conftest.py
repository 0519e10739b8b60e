"""Fixtures: the bench's reference server (exact timing) as a real process; the bench run as a user would."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import BIN, ROOT, ServerProcess, start_python_server

ReferenceFactory = Callable[..., ServerProcess]


@pytest.fixture(scope="module")
def reference_servers(log_dir: Path) -> Iterator[ReferenceFactory]:
    """Start `python -m bench.reference_server` with the given timing; all stop with the module."""
    started: list[ServerProcess] = []

    def start(
        ttft_ms: float = 50,
        tpot_ms: float = 5,
        output_tokens: int = 20,
        prefill_us: float = 0,
        framing: str = "chunked",
    ) -> ServerProcess:
        args = ["--ttft-ms", str(ttft_ms), "--tpot-ms", str(tpot_ms), "--output-tokens", str(output_tokens)]
        args += ["--prefill-us-per-token", str(prefill_us), "--framing", framing]
        server = start_python_server("bench.reference_server", args, log_dir, "reference")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def server_stats(server: ServerProcess) -> dict[str, float]:
    """The reference server's own lateness since the last call (and reset it)."""
    root = server.url.removesuffix("/v1")
    data: dict[str, float] = httpx.get(f"{root}/stats?reset=1", timeout=5).json()
    return data


def bench_process(args: list[str], out: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`python -m bench ARGS --out OUT` as a user runs it; its terminal output is captured."""
    return subprocess.run(
        [str(BIN / "python"), "-m", "bench", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_bench(args: list[str], out: Path, timeout: float = 240) -> dict[str, Any]:
    """`python -m bench ARGS --out OUT`, which must succeed; returns its results.json."""
    result = bench_process(args, out, timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data: dict[str, Any] = json.loads((out / "results.json").read_text())
    return data
