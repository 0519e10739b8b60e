"""Measure a running engine's speed, and the machine's memory bandwidth that bounds it.

Decoding one token reads every weight matrix once (the embedding table only by row), so a
memory-bound engine cannot beat `bandwidth / bytes_per_token` tokens per second for one stream:

    .venv/bin/python -m tests.local.bench_engine --base-url http://127.0.0.1:8001/v1 \
        --model qwen2.5-coder-0.5b-instruct --weights ~/.cache/chatstack/models/qwen2.5-coder-0.5b/hf

`--text FILE` also scores a fixed text (its mean log-likelihood per token, through `/v1/completions`
with `echo` and `logprobs`), to compare precisions of one model; `--engine-pid PID` adds the memory of
the engine's processes (that pid and its descendants).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from openai import AsyncOpenAI

PROMPT = "Write a long story about a lighthouse keeper and a storm."


@dataclass(frozen=True)
class StreamTiming:
    ttft_s: float
    tokens: int
    decode_s: float
    """From the first token to the last."""

    @property
    def decode_tokens_per_s(self) -> float:
        return (self.tokens - 1) / self.decode_s if self.decode_s > 0 else 0.0


async def one_stream(client: AsyncOpenAI, model: str, max_tokens: int) -> StreamTiming:
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=max_tokens,
        stream=True,
        temperature=0.7,
        extra_body={"ignore_eos": True, "min_tokens": max_tokens},
        stream_options={"include_usage": True},
    )
    usage_tokens = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter()
            tokens += 1
        if chunk.usage:
            usage_tokens = chunk.usage.completion_tokens
    end = time.perf_counter()
    assert first is not None, "no tokens"
    return StreamTiming(first - started, usage_tokens or tokens, end - first)


async def streams(base_url: str, model: str, count: int, max_tokens: int) -> dict[str, float]:
    async with AsyncOpenAI(base_url=base_url, api_key="unused") as client:
        started = time.perf_counter()
        timings = await asyncio.gather(*(one_stream(client, model, max_tokens) for _ in range(count)))
        wall = time.perf_counter() - started
    return {
        "streams": count,
        "ttft_s": round(min(t.ttft_s for t in timings), 3),
        "per_stream_tokens_per_s": round(sum(t.decode_tokens_per_s for t in timings) / count, 1),
        "aggregate_tokens_per_s": round(sum(t.tokens for t in timings) / wall, 1),
    }


def memory_bandwidth_gb_s(size_bytes: int = 1 << 30, repeats: int = 5) -> float:
    """Best of `repeats` copies of a large array: bytes read plus bytes written, per second (one core)."""
    source = np.ones(size_bytes // 8, dtype=np.float64)
    target = np.empty_like(source)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - started)
    return 2 * size_bytes / best / 1e9


def bytes_per_token(weights: Path) -> tuple[int, int]:
    """(bytes of weights read per decoded token, total bytes): all tensors but the embedding table."""
    header: dict[str, Any] = {}
    total = 0
    for file in sorted(weights.glob("*.safetensors")):
        with file.open("rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            header.update(json.loads(handle.read(length)))
        total += file.stat().st_size
    embedding = 0
    for name, meta in header.items():
        if name.endswith("embed_tokens.weight"):
            start, end = meta["data_offsets"]
            embedding += end - start
    return total - embedding, total


async def text_log_likelihood(base_url: str, model: str, text: str) -> dict[str, float]:
    """Mean log-likelihood per token of `text` under the model (the first token, which has no context,
    left out), the perplexity it gives, and the time the request took (nearly all of it prefill)."""
    async with AsyncOpenAI(base_url=base_url, api_key="unused", timeout=600) as client:
        started = time.perf_counter()
        completion = await client.completions.create(
            model=model, prompt=text, max_tokens=1, echo=True, logprobs=0, temperature=0
        )
        prefill_s = time.perf_counter() - started
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.token_logprobs is not None
    assert completion.usage is not None
    # The echoed prompt, then the one token generated: only the prompt's tokens are scored.
    prompt = logprobs.token_logprobs[: completion.usage.prompt_tokens]
    scored = [lp for lp in prompt[1:] if lp is not None]
    mean = sum(scored) / len(scored)
    return {
        "tokens": len(scored),
        "mean_log_likelihood": round(mean, 4),
        "perplexity": round(float(np.exp(-mean)), 3),
        "prefill_s": round(prefill_s, 2),
    }


def engine_memory_gb(pid: int) -> dict[str, float]:
    """RSS and PSS (shared pages split between the processes sharing them) of `pid` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[-1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, []))
    rss = pss = 0
    for member in tree:
        try:
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return {"processes": len(tree), "rss_gb": round(rss / 1e9, 2), "pss_gb": round(pss / 1e9, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description="Engine speed against the memory-bandwidth bound.")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--weights", type=Path, required=True, help="the model folder the engine loaded")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--text", type=Path, help="a text file to score (mean log-likelihood per token)")
    parser.add_argument("--engine-pid", type=int, help="the engine's process, to report its memory")
    args = parser.parse_args()
    results: dict[str, Any] = {"load_average": os.getloadavg()}
    if args.text:
        text = args.text.read_text(encoding="utf-8")
        results["text"] = asyncio.run(text_log_likelihood(args.base_url, args.model, text))
    results["one_stream"] = asyncio.run(streams(args.base_url, args.model, 1, args.max_tokens))
    results["four_streams"] = asyncio.run(streams(args.base_url, args.model, 4, args.max_tokens))
    per_token, total = bytes_per_token(args.weights.expanduser())
    bandwidth = memory_bandwidth_gb_s()
    results["weights_gb"] = round(total / 1e9, 3)
    results["bytes_per_token_gb"] = round(per_token / 1e9, 3)
    results["copy_bandwidth_gb_s_one_core"] = round(bandwidth, 1)
    results["bound_tokens_per_s_one_core_bandwidth"] = round(bandwidth * 1e9 / per_token, 1)
    if args.engine_pid:  # after the streams, so whatever they allocated is counted
        results["memory"] = engine_memory_gb(args.engine_pid)
    results["load_average_after"] = os.getloadavg()
    print(json.dumps(results, indent=2, default=lambda o: asdict(o)))


if __name__ == "__main__":
    main()
