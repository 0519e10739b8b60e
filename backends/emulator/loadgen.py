"""A closed-loop streaming client for checking an emulator (or any OpenAI-compatible server) over HTTP.

python -m backends.emulator.loadgen --url http://127.0.0.1:8300/v1 --model qwen2.5-7b-instruct \
    --concurrency 1 8 --requests 20 --prompt-tokens 299 --max-tokens 512 [--time-scale 0.1]

It measures what vLLM's benchmark measures (benchstats.py) and, with --time-scale, reports emulated
seconds (wall time divided by the scale) so the numbers compare with the profile's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence

import aiohttp

from backends.emulator.benchstats import RequestTiming, summarize
from backends.emulator.stream_response import SUBMITTED_HEADER
from backends.emulator.tokens import TEMPLATE_TOKENS_PER_MESSAGE
from protocol.sse import SseParser


class StreamError(RuntimeError):
    """A request failed (HTTP error status or a stream that ended without [DONE])."""


def prompt_with_tokens(tokens: int, salt: int = 0) -> str:
    """A user message that the emulator counts as exactly `tokens` prompt tokens (4 chars each)."""
    chars = max(tokens - TEMPLATE_TOKENS_PER_MESSAGE, 1) * 4
    text = f"Request {salt}: " + "lorem ipsum dolor sit amet " * (chars // 27 + 1)
    return text[:chars]


def new_session() -> aiohttp.ClientSession:
    """An HTTP session with no connection cap (load tests open many streams at once)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
    )


async def stream_completion(
    session: aiohttp.ClientSession, base_url: str, model: str, prompt: str, max_tokens: int
) -> RequestTiming:
    """Send one streaming chat completion and time every content chunk."""
    payload = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "max_tokens": max_tokens,
        "stream_options": {"include_usage": True},
    }
    chunk_times: list[float] = []
    done = False
    sent_at = time.perf_counter()
    async with session.post(f"{base_url}/chat/completions", json=payload) as response:
        if response.status != 200:
            raise StreamError(f"HTTP {response.status}: {(await response.text())[:300]}")
        submitted = response.headers.get(SUBMITTED_HEADER)
        parser = SseParser()
        async for piece in response.content.iter_any():
            now = time.perf_counter()
            for event in parser.feed(piece):
                if event.data == "[DONE]":
                    done = True
                    break
                choices = json.loads(event.data).get("choices") or []
                delta = choices[0].get("delta", {}) if choices else {}
                if delta.get("content") or delta.get("tool_calls"):
                    chunk_times.append(now)
            if done:
                break
    if not done or not chunk_times:
        raise StreamError("the stream ended without content or without [DONE]")
    return RequestTiming(
        sent_at,
        chunk_times[0],
        chunk_times[-1],
        len(chunk_times),
        chunk_times,
        float(submitted) if submitted is not None else None,
    )


async def closed_loop(
    base_url: str, model: str, prompts: Sequence[str], concurrency: int, max_tokens: int
) -> list[RequestTiming]:
    """Send `prompts` from `concurrency` clients, each starting its next request when one ends."""
    queue = list(reversed(prompts))
    timings: list[RequestTiming] = []
    async with new_session() as session:

        async def client() -> None:
            while queue:
                prompt = queue.pop()
                timings.append(await stream_completion(session, base_url, model, prompt, max_tokens))

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return timings


def scaled(timings: Sequence[RequestTiming], time_scale: float) -> list[RequestTiming]:
    """Client timings converted from wall seconds to emulated seconds."""
    factor = 1 / time_scale
    return [
        RequestTiming(
            t.sent_at * factor,
            t.first_token_at * factor,
            t.finished_at * factor,
            t.output_tokens,
            [c * factor for c in t.chunk_times],
            t.server_submitted_at,  # already emulated seconds
        )
        for t in timings
    ]


def main() -> None:
    """Run closed-loop benchmarks at each concurrency and print p50s."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="base URL ending in /v1")
    parser.add_argument("--model", required=True)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--prompt-tokens", type=int, default=299)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args()
    for concurrency in args.concurrency:
        prompts = [prompt_with_tokens(args.prompt_tokens, i) for i in range(args.requests)]
        started = time.perf_counter()
        timings = asyncio.run(closed_loop(args.url, args.model, prompts, concurrency, args.max_tokens))
        wall = time.perf_counter() - started
        s = summarize(scaled(timings, args.time_scale))
        print(
            f"concurrency {concurrency:4d}: TTFT p50 {s.ttft_p50 * 1000:8.1f} ms  TPOT p50 "
            f"{s.tpot_p50 * 1000:6.2f} ms  ITL p50/p90 {s.itl_p50 * 1000:6.1f}/{s.itl_p90 * 1000:6.1f} ms  "
            f"{s.throughput_tok_s:7.1f} tok/s  ({s.requests} requests, {wall:.1f} s wall)"
        )


if __name__ == "__main__":
    main()
