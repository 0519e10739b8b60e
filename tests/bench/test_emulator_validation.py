"""The bench against the GPU emulator: what it measures agrees with what the emulator says it produced.

The emulator (backends/emulator) records vLLM's own histograms (`/metrics`): time to first token and
time per output token per request, measured inside the server. The bench, measuring from outside over
HTTP, must agree with their means within 5%. qwen-a10g is used because it streams every token as it
is made; the DeepSeek profiles batch tokens into 50 ms chunks on the way out (Ray Serve), which a
client sees and a server-side histogram does not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backends.emulator.profiles import get_profile
from tests.bench.conftest import run_bench
from tests.support.processes import ServerProcess, start_emulator

pytestmark = pytest.mark.slow
# Slow enough that the emulator's own HTTP stack (a few ms, which a client rightly sees) stays small
# next to the emulated times.
TIME_SCALE = 0.5


@pytest.fixture(scope="module")
def emulator(log_dir: Path) -> Iterator[ServerProcess]:
    server = start_emulator(log_dir, "qwen-a10g", TIME_SCALE)
    yield server
    server.stop()


def histogram_mean(metrics: str, name: str) -> tuple[float, int]:
    """(sum / count, count) of a Prometheus histogram, summed over its label sets."""

    def total(suffix: str) -> float:
        pattern = rf"^{re.escape(name)}_{suffix}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$"
        return sum(float(v) for v in re.findall(pattern, metrics, re.MULTILINE))

    count = total("count")
    return (total("sum") / count if count else float("nan")), int(count)


def test_ttft_and_tpot_agree_with_the_emulators_own_histograms(
    emulator: ServerProcess, tmp_path: Path
) -> None:
    root = emulator.url.removesuffix("/v1")
    before = httpx.get(f"{root}/metrics", timeout=10).text
    doc = run_bench(
        [
            "openai", "--base-url", emulator.url, "--model", "qwen2.5-7b-instruct", "--phases", "concurrency",
            "--concurrency", "1", "--requests", "10", "--dataset", "fixed", "--input-tokens", "300",
            "--max-tokens", "32",
        ],
        tmp_path,
        timeout=300,
    )  # fmt: skip
    after = httpx.get(f"{root}/metrics", timeout=10).text
    level = doc["levels"][0]
    row = level["summary"]
    assert row["error_count"] == 0, level["errors"]

    def delta(name: str) -> float:
        mean_after, n_after = histogram_mean(after, name)
        mean_before, n_before = histogram_mean(before, name)
        assert n_after - n_before == 10
        return (mean_after * n_after - (mean_before * n_before if n_before else 0.0)) / (n_after - n_before)

    # The histograms are in emulated seconds and start after ingress (as vLLM's metrics would);
    # a client sees both scaled to wall time, ingress included.
    ingress_ms = 1000 * get_profile("qwen-a10g").ingress_s
    server_ttft_ms = TIME_SCALE * (ingress_ms + 1000 * delta("vllm:time_to_first_token_seconds"))
    server_tpot_ms = TIME_SCALE * 1000 * delta("vllm:request_time_per_output_token_seconds")
    assert row["ttft_mean_ms"] == pytest.approx(server_ttft_ms, rel=0.05)
    assert row["tpot_mean_ms"] == pytest.approx(server_tpot_ms, rel=0.05)
