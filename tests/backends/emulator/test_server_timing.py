"""The live server reproduces its timing model over real HTTP streams (time-scaled to stay short).

For each profile, a closed-loop client runs at concurrency 1 and 8; the model then replays the
arrivals the server reported (`x-emulator-submitted-at`), so both see the same queueing even when a
busy machine delays some requests, and the measured TTFT p50 and TPOT p50 (vLLM's definitions, from
the client's clock) must match the model's within 10%. test_calibration.py separately checks the
model against the seed's CSV numbers.
"""

from __future__ import annotations

import pytest

from backends.emulator.benchstats import RequestTiming, Summary, summarize
from backends.emulator.loadgen import closed_loop, prompt_with_tokens, scaled
from backends.emulator.profiles import get_profile
from backends.emulator.simulate import Workload, simulate
from tests.backends.emulator.conftest import StartEmulator

pytestmark = pytest.mark.slow

TIME_SCALE = 0.25
PROMPT_TOKENS = 299  # the seed's ShareGPT median
OUTPUT_TOKENS = 64
RUNS = ((1, 5), (8, 16))  # (concurrency, requests)
# A machine shared with other test suites can starve the server for hundreds of milliseconds, which
# a time-scaled run magnifies. A systematic timing error fails every attempt; a scheduling hiccup
# does not, so each measurement gets a few fresh attempts.
ATTEMPTS = 3


def replayed(profile_name: str, measured: list[RequestTiming]) -> list[RequestTiming]:
    arrivals = [t.server_submitted_at for t in measured]
    assert None not in arrivals, "the emulator reports when each request arrived"
    origin = min(a for a in arrivals if a is not None)
    sends = tuple(sorted(a - origin for a in arrivals if a is not None))
    workload = Workload((PROMPT_TOKENS,) * len(measured), OUTPUT_TOKENS, send_times=sends)
    return simulate(get_profile(profile_name), workload)


async def measure(url: str, profile: str, concurrency: int, requests: int) -> tuple[Summary, Summary]:
    """(measured, model) summaries of one closed-loop run, in emulated seconds."""
    model = get_profile(profile).served_model_name
    prompts = [prompt_with_tokens(PROMPT_TOKENS, i) for i in range(requests)]
    timings = await closed_loop(url, model, prompts, concurrency, OUTPUT_TOKENS)
    measured = scaled(timings, TIME_SCALE)
    assert [t.output_tokens for t in measured] == [OUTPUT_TOKENS] * requests
    return summarize(measured), summarize(replayed(profile, measured))


def within_ten_percent(got: Summary, want: Summary) -> bool:
    return all(
        abs(measured / expected - 1) <= 0.10
        for measured, expected in ((got.ttft_p50, want.ttft_p50), (got.tpot_p50, want.tpot_p50))
    )


@pytest.mark.parametrize("profile", ["qwen-a10g", "deepseek-pd-a10g", "deepseek-a10g"])
async def test_measured_ttft_and_tpot_match_the_model(start_emulator: StartEmulator, profile: str) -> None:
    server = start_emulator(profile, TIME_SCALE)
    for concurrency, requests in RUNS:
        attempts = []
        for _ in range(ATTEMPTS):
            got, want = await measure(server.url, profile, concurrency, requests)
            attempts.append(
                f"TTFT p50 {got.ttft_p50:.3f}s vs model {want.ttft_p50:.3f}s, "
                f"TPOT p50 {got.tpot_p50 * 1000:.2f}ms vs model {want.tpot_p50 * 1000:.2f}ms"
            )
            if within_ten_percent(got, want):
                break
        else:
            pytest.fail(f"{profile} at concurrency {concurrency}, every attempt off by >10%: {attempts}")
