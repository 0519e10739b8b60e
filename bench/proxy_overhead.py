"""What chatstack's OpenAI-compatible proxy and agent paths add on top of the backend.

    python -m bench.proxy_overhead [--requests 200] [--out overhead.json]

Starts a scripted reference backend (TTFT 50 ms, TPOT 5 ms, 20 tokens) and chatstack in front of it,
then measures, at concurrency 1, 16 and 64, the median time to first token directly and through
`/v1/chat/completions` (model = the backend), the most chunks per second the proxy relays, and the
time an agent run spends beyond its model and tool calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from protocol.sse import SseParser

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(args: list[str], health: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        args, env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    import urllib.request

    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(health, timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{args[0]} did not start; see {log}")


@dataclass
class Sample:
    ttft_s: float
    total_s: float
    chunks: int


async def _stream(session: aiohttp.ClientSession, url: str, model: str, content: str) -> Sample:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "stream": True}
    started = time.perf_counter()
    ttft = 0.0
    chunks = 0
    async with session.post(url, json=body) as response:
        response.raise_for_status()
        parser = SseParser()
        async for piece in response.content.iter_any():
            for event in parser.feed(piece):
                if event.data.startswith("{") and '"content"' in event.data:
                    if not ttft:
                        ttft = time.perf_counter() - started
                    chunks += 1
    return Sample(ttft, time.perf_counter() - started, chunks)


async def _level(url: str, model: str, content: str, concurrency: int, requests: int) -> list[Sample]:
    connector = aiohttp.TCPConnector(limit=0)
    samples: list[Sample] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                samples.append(await _stream(session, url, model, content))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluate arithmetic.",
            "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
        },
    }
]


async def _agent_baseline(backend_url: str) -> float:
    """The two model calls of a one-tool agent run, made directly, back to back (seconds)."""
    url = f"{backend_url}/chat/completions"
    messages: list[dict[str, object]] = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "calc: 1234*5678"},
    ]
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        body = {"model": "scripted", "messages": messages, "tools": TOOLS, "stream": True}
        async with session.post(url, json=body) as response:
            raw = await response.read()
        arguments = "".join(
            json.loads(event.data)["choices"][0]["delta"]
            .get("tool_calls", [{}])[0]
            .get("function", {})
            .get("arguments", "")
            for event in SseParser().feed(raw)
            if event.data.startswith("{") and '"tool_calls"' in event.data
        )
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "calculator", "arguments": arguments},
        }
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "7006652"},
        ]
        body = {"model": "scripted", "messages": messages, "tools": TOOLS, "stream": True}
        async with session.post(url, json=body) as response:
            await response.read()
    return time.perf_counter() - started


def _p50(values: list[float]) -> float:
    return statistics.median(values) * 1000


async def measure(backend_url: str, chatstack_url: str, requests: int) -> dict[str, object]:
    results: dict[str, object] = {}
    prompt = "tokens: 20"
    await _level(f"{chatstack_url}/v1/chat/completions", "scripted", prompt, 4, 20)  # warm-up
    latency = []
    for concurrency in (1, 16, 64):
        n = max(requests, 4 * concurrency)
        direct = await _level(f"{backend_url}/chat/completions", "scripted", prompt, concurrency, n)
        proxied = await _level(f"{chatstack_url}/v1/chat/completions", "scripted", prompt, concurrency, n)
        row = {
            "concurrency": concurrency,
            "direct_ttft_p50_ms": round(_p50([s.ttft_s for s in direct]), 2),
            "proxy_ttft_p50_ms": round(_p50([s.ttft_s for s in proxied]), 2),
            "direct_total_p50_ms": round(_p50([s.total_s for s in direct]), 2),
            "proxy_total_p50_ms": round(_p50([s.total_s for s in proxied]), 2),
        }
        row["added_ttft_p50_ms"] = round(row["proxy_ttft_p50_ms"] - row["direct_ttft_p50_ms"], 2)
        latency.append(row)
    results["latency"] = latency

    # Relay capacity: many streams whose chunks arrive one by one (TPOT 5 ms), as from a real server.
    for concurrency in (64, 256):
        started = time.perf_counter()
        samples = await _level(
            f"{chatstack_url}/v1/chat/completions", "scripted", "tokens: 200", concurrency, concurrency
        )
        results[f"relay_chunks_per_s_c{concurrency}"] = round(
            sum(s.chunks for s in samples) / (time.perf_counter() - started)
        )
        started = time.perf_counter()
        samples = await _level(
            f"{backend_url}/chat/completions", "scripted", "tokens: 200", concurrency, concurrency
        )
        results[f"direct_chunks_per_s_c{concurrency}"] = round(
            sum(s.chunks for s in samples) / (time.perf_counter() - started)
        )

    # Agent path: one calculator round is two model calls and a tool call. The baseline sends the same
    # two requests straight to the backend; what remains is chatstack's own time per step.
    agent = await _level(f"{chatstack_url}/v1/chat/completions", "agent/scripted", "calc: 1234*5678", 1, 30)
    baseline = [await _agent_baseline(backend_url) for _ in range(30)]
    agent_p50 = _p50([s.total_s for s in agent])
    baseline_p50 = statistics.median(baseline) * 1000
    results["agent"] = {
        "agent_total_p50_ms": round(agent_p50, 2),
        "same_model_calls_direct_p50_ms": round(baseline_p50, 2),
        "overhead_per_step_ms": round((agent_p50 - baseline_p50) / 2, 2),
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="chatstack-overhead-"))
    backend_port, app_port = _free_port(), _free_port()
    python = str(BIN / "python")
    backend = _start(
        [
            python,
            "-m",
            "backends.scripted.server",
            "--port",
            str(backend_port),
            "--ttft-ms",
            "50",
            "--token-delay-ms",
            "5",
        ],
        f"http://127.0.0.1:{backend_port}/health",
        {},
        workdir / "backend.log",
    )
    backends_file = workdir / "backends.yaml"
    backends_file.write_text(
        "backends:\n"
        f"  - {{name: scripted, base_url: 'http://127.0.0.1:{backend_port}/v1', model: scripted}}\n"
    )
    app = _start(
        [str(BIN / "chatstack"), "serve", "--port", str(app_port)],
        f"http://127.0.0.1:{app_port}/healthz",
        {
            "CHATSTACK_BACKENDS_FILE": str(backends_file),
            "CHATSTACK_DEFAULT_BACKEND": "scripted",
            "CHATSTACK_DATA_DIR": str(workdir),
            "CHATSTACK_LOG_LEVEL": "WARNING",
            # The limiter stays in the path (its cost is part of the overhead), but never refuses.
            "CHATSTACK_RATE_LIMIT_PER_MINUTE": str(10**9),
        },
        workdir / "chatstack.log",
    )
    try:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        results = asyncio.run(
            measure(f"http://127.0.0.1:{backend_port}/v1", f"http://127.0.0.1:{app_port}", args.requests)
        )
        results["cpu_count"] = os.cpu_count()
    finally:
        for process in (app, backend):
            process.send_signal(signal.SIGTERM)
            process.wait(15)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
