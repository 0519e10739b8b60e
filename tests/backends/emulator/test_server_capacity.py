"""A thousand concurrent streams on one emulator process, on this small machine."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from backends.emulator.loadgen import new_session, prompt_with_tokens, stream_completion
from tests.backends.emulator.conftest import StartEmulator

pytestmark = pytest.mark.slow

STREAMS = 1000
OUTPUT_TOKENS = 16


async def test_a_thousand_concurrent_streams_complete_with_every_token(start_emulator: StartEmulator) -> None:
    # Real limits (256 running, the rest queued by the scheduler), 20x faster than real time.
    server = start_emulator("qwen-a10g", 0.05)
    started = time.perf_counter()
    async with new_session() as session:
        timings = await asyncio.gather(
            *(
                stream_completion(
                    session, server.url, "qwen2.5-7b-instruct", prompt_with_tokens(16, i), OUTPUT_TOKENS
                )
                for i in range(STREAMS)
            )
        )
    elapsed = time.perf_counter() - started
    assert [t.output_tokens for t in timings] == [OUTPUT_TOKENS] * STREAMS
    assert elapsed < 120, f"{STREAMS} streams took {elapsed:.1f}s"
    async with httpx.AsyncClient() as http:
        engine = (await http.get(server.url.removesuffix("/v1") + "/health")).json()["engine"]
    assert engine["running"] == engine["waiting"] == 0
