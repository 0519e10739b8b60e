"""Run a benchmark against the timing model in virtual time: milliseconds of CPU, no sleeping.

This is what the profiles are calibrated with (`python -m backends.emulator.simulate` prints the fit
against the seed's CSVs) and what the end-to-end tests compare the live server with.
"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import dataclass

from backends.emulator.benchstats import RequestTiming, Summary, summarize
from backends.emulator.chunking import flush_times
from backends.emulator.deployment import Deployment
from backends.emulator.engine import Sequence
from backends.emulator.profiles import PROFILES, Profile, get_profile

SEED_REQUESTS = 20
SEED_OUTPUT_TOKENS = 512
# Each CSV row sampled its own 20 ShareGPT prompts: (input_tokens_p50, input_tokens_p90) by concurrency.
# The "64" row only had 20 requests, so it ran at an effective concurrency of 20.
SEED_INPUT_TOKENS: dict[int, tuple[int, int]] = {
    1: (299, 887),
    2: (300, 902),
    4: (169, 1068),
    8: (252, 877),
    64: (299, 916),
}


@dataclass(frozen=True, slots=True)
class Workload:
    """A benchmark: the prompts, sent in order, by `concurrency` closed-loop clients; or open loop,
    at the given `send_times` (e.g. replaying a real run) or as Poisson arrivals at `request_rate`."""

    prompt_tokens: tuple[int, ...]
    output_tokens: int
    concurrency: int = 1
    request_rate: float | None = None
    send_times: tuple[float, ...] | None = None
    seed: int = 0
    stagger_s: float = 0.005
    """Gap between the first requests of concurrent clients: real clients never send at the same
    instant, and whether a request catches the engine's current step or the next one matters."""


def sharegpt_like_prompts(count: int, median: int, p90: int, seed: int = 0) -> tuple[int, ...]:
    """`count` prompt lengths from a log-normal with the given median and p90, in random order.

    Evenly spaced quantiles (not random draws) keep a 20-request run representative.
    """
    sigma = math.log(p90 / median) / 1.2815515655446004
    normal = _standard_normal_quantiles(count)
    lengths = [min(2048, max(4, round(median * math.exp(sigma * z)))) for z in normal]
    random.Random(seed).shuffle(lengths)
    return tuple(lengths)


def seed_workload(concurrency: int, seed: int = 0) -> Workload:
    """The seed benchmark's shape: 20 ShareGPT prompts (that row's lengths), 512 output tokens each."""
    median, p90 = SEED_INPUT_TOKENS.get(concurrency, SEED_INPUT_TOKENS[1])
    prompts = sharegpt_like_prompts(SEED_REQUESTS, median, p90, seed)
    return Workload(prompts, SEED_OUTPUT_TOKENS, concurrency)


def simulate(profile: Profile, workload: Workload) -> list[RequestTiming]:
    """Every request's client-side timing when `workload` runs against `profile` (virtual time)."""
    deployment = Deployment(profile)
    token_times: dict[int, list[float]] = {}
    sent_at: dict[int, float] = {}
    timings: list[RequestTiming] = []
    next_index = 0

    def send(now: float) -> None:
        nonlocal next_index
        if next_index >= len(workload.prompt_tokens):
            return
        seq = Sequence(next_index, workload.prompt_tokens[next_index], workload.output_tokens)
        sent_at[seq.seq_id] = now
        token_times[seq.seq_id] = []
        deployment.submit(seq, now)
        next_index += 1

    open_loop = workload.send_times is not None or workload.request_rate is not None
    if workload.send_times is not None:
        arrivals = sorted(workload.send_times)
    elif workload.request_rate is not None:
        arrivals = _poisson_arrivals(workload)
    else:
        starts = min(workload.concurrency, len(workload.prompt_tokens))
        arrivals = [i * workload.stagger_s for i in range(starts)]
    while True:
        when = deployment.next_event_time()
        if arrivals and (when is None or arrivals[0] <= when):
            send(arrivals.pop(0))
            continue
        if when is None:
            break
        for result in deployment.advance(when):
            for seq in result.tokens:
                token_times[seq.seq_id].append(result.time)
            for seq in result.finished:
                times = token_times.pop(seq.seq_id)
                chunks = flush_times(times, profile.stream_batching_interval_s)
                timings.append(RequestTiming(sent_at[seq.seq_id], chunks[0], chunks[-1], len(times), chunks))
                if not open_loop:  # a closed-loop client sends its next request at once
                    send(result.time)
    return timings


def _poisson_arrivals(workload: Workload) -> list[float]:
    rng = random.Random(workload.seed)
    rate = workload.request_rate or 1.0
    times, now = [], 0.0
    for _ in workload.prompt_tokens:
        times.append(now)
        now += rng.expovariate(rate)
    return times


def fit_table(profile: Profile) -> list[tuple[int, Summary]]:
    """The model's summary for the seed's workload at each concurrency the seed measured."""
    return [(c, summarize(simulate(profile, seed_workload(c)))) for c in SEED_INPUT_TOKENS]


def _standard_normal_quantiles(count: int) -> list[float]:
    from statistics import NormalDist

    unit = NormalDist()
    return [unit.inv_cdf((i + 0.5) / count) for i in range(count)]


def main() -> None:
    """Print the model's predictions for the seed's benchmark next to the measured targets."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("profiles", nargs="*", default=sorted(PROFILES))
    args = parser.parse_args()
    for name in args.profiles:
        profile = get_profile(name)
        targets = {t.concurrency: t for t in profile.targets}
        print(f"\n{name}: model (target)")
        print("  conc  TTFT p50 ms        TPOT p50 ms      ITL p50/p90 ms    tok/s")
        for concurrency, s in fit_table(profile):
            t = targets.get(concurrency)
            ttft = f"{s.ttft_p50 * 1000:7.0f}" + (f" ({t.ttft_p50_s * 1000:5.0f})" if t else " " * 8)
            tpot = f"{s.tpot_p50 * 1000:6.1f}" + (f" ({t.tpot_p50_s * 1000:5.1f})" if t else " " * 8)
            tput = f"{s.throughput_tok_s:6.1f}" + (f" ({t.throughput_tok_s:5.1f})" if t else "")
            itl = f"{s.itl_p50 * 1000:6.1f}/{s.itl_p90 * 1000:6.1f}"
            print(f"  {concurrency:4d}  {ttft}   {tpot}   {itl}   {tput}")


if __name__ == "__main__":
    main()
