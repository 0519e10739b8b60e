"""Live-server behaviour that needs real time: gauges while streams run, disconnects, the CLI."""

from __future__ import annotations

import asyncio
import subprocess

import httpx
import pytest

from backends.emulator.loadgen import closed_loop, new_session, prompt_with_tokens
from tests.backends.emulator.conftest import StartEmulator
from tests.backends.emulator.test_app import metric
from tests.support.processes import BIN, ROOT

pytestmark = pytest.mark.slow

MODEL = "qwen2.5-7b-instruct"


async def test_scheduler_gauges_move_while_streams_run(start_emulator: StartEmulator) -> None:
    server = start_emulator("qwen-a10g", 0.25)
    root = server.url.removesuffix("/v1")
    prompts = [prompt_with_tokens(100, i) for i in range(8)]
    load = asyncio.create_task(closed_loop(server.url, MODEL, prompts, 8, 64))
    seen_running = 0.0
    kv_seen = 0.0
    async with httpx.AsyncClient() as http:
        while not load.done():
            text = (await http.get(f"{root}/metrics")).text
            seen_running = max(seen_running, metric(text, "vllm:num_requests_running", model_name=MODEL))
            kv_seen = max(kv_seen, metric(text, "vllm:kv_cache_usage_perc", model_name=MODEL))
            await asyncio.sleep(0.05)
        await load
        text = (await http.get(f"{root}/metrics")).text
    assert seen_running == 8
    assert kv_seen > 0
    assert metric(text, "vllm:num_requests_running", model_name=MODEL) == 0
    assert metric(text, "vllm:kv_cache_usage_perc", model_name=MODEL) == 0
    assert metric(text, "vllm:request_success_total", model_name=MODEL, finished_reason="length") == 8
    assert metric(text, "vllm:generation_tokens_total", model_name=MODEL) == 8 * 64


async def test_a_client_that_disconnects_frees_its_place_in_the_engine(start_emulator: StartEmulator) -> None:
    server = start_emulator("qwen-a10g", 0.1)
    health_url = server.url.removesuffix("/v1") + "/health"
    payload = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "max_tokens": 5000,
    }
    async with httpx.AsyncClient() as http:
        async with (
            new_session() as session,
            session.post(f"{server.url}/chat/completions", json=payload) as response,
        ):
            await response.content.readline()
            assert (await http.get(health_url)).json()["engine"]["running"] == 1
        for _ in range(100):
            engine = (await http.get(health_url)).json()["engine"]
            if engine["running"] == 0:
                break
            await asyncio.sleep(0.05)
    assert engine["running"] == 0
    assert engine["kv_cache_usage"] == 0


def test_an_unknown_profile_is_refused_with_the_valid_names() -> None:
    result = subprocess.run(
        [str(BIN / "python"), "-m", "backends.emulator", "--profile", "h100"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "qwen-a10g" in result.stderr
