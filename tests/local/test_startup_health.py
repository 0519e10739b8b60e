"""`local`'s health while the embedded engine starts: `starting`, then straight `up`, never `down`.

The registry polls every backend's `/models` on an interval; a poll made while the engine was loading
said "down", and `GET /api/backends` used to show that from the moment the supervisor said ready until
the next poll (10 s by default).
"""

from __future__ import annotations

import asyncio
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
import yaml
from aiohttp import web

from backends.client.config import BackendConfig
from backends.client.registry import BackendRegistry
from tests.local.fake_engine import install_fake_engine
from tests.support.processes import ServerProcess, free_port, start_chatstack

START_TIMEOUT_S = 60.0


async def test_a_check_begun_earlier_never_overwrites_a_later_one() -> None:
    """A poll that set out while the backend was loading (and answers late, "down") must not replace the
    "up" of a check made after it became ready."""
    release, first_arrived = asyncio.Event(), asyncio.Event()
    calls = 0

    async def models(_: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:  # the early poll: held until the later check has been recorded
            first_arrived.set()
            await release.wait()
            return web.json_response({"error": "loading"}, status=503)
        return web.json_response({"object": "list", "data": [{"id": "tiny"}]})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            config = BackendConfig(name="local", base_url=f"http://127.0.0.1:{port}/v1", model="tiny")
            registry = BackendRegistry([config], http, "local")
            early = asyncio.create_task(registry.check("local"))
            await first_arrived.wait()
            assert (await registry.check("local")).status == "up"
            release.set()
            assert (await early).status == "down"
            assert registry.health["local"].status == "up"
    finally:
        await runner.cleanup()


@pytest.fixture
def chatstack_with_a_slow_engine(tmp_path: Path, log_dir: Path) -> Iterator[tuple[ServerProcess, Path]]:
    """chatstack whose `local` backend is a stand-in engine that takes 4 s to load, polled every 60 s."""
    fake = install_fake_engine(tmp_path / "fake")
    python = tmp_path / "engine-python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{fake}:$PYTHONPATH" exec "{sys.executable}" "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    model = tmp_path / "model"
    model.mkdir()
    engine_port = free_port()
    backends = tmp_path / "backends.yaml"
    entry = {
        "name": "local",
        "kind": "embedded",
        "base_url": f"http://127.0.0.1:{engine_port}/v1",
        "model": "tiny-instruct",
    }
    backends.write_text(yaml.safe_dump({"backends": [entry]}))
    server = start_chatstack(
        {
            "CHATSTACK_DATA_DIR": str(tmp_path / "data"),
            "CHATSTACK_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'chatstack.db'}",
            "CHATSTACK_BACKENDS_FILE": str(backends),
            "CHATSTACK_DEFAULT_BACKEND": "local",
            "CHATSTACK_HEALTH_INTERVAL_S": "60",
            "CHATSTACK_ENGINE_PYTHON": str(python),
            "CHATSTACK_MODEL": str(model),
            "FAKE_STATE": str(tmp_path / "starts.jsonl"),
            "FAKE_DELAY_S": "4",
        },
        log_dir,
    )
    try:
        yield server, tmp_path / "starts.jsonl"
    finally:
        server.stop()


@pytest.mark.slow
def test_local_goes_from_starting_straight_to_up(
    chatstack_with_a_slow_engine: tuple[ServerProcess, Path],
) -> None:
    server, starts = chatstack_with_a_slow_engine
    seen: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(base_url=server.url, timeout=10) as api:
        while time.monotonic() < deadline:
            (local,) = api.get("/api/backends").json()["items"]
            if not seen or seen[-1] != local["health"]:
                seen.append(local["health"])
            if local["health"] == "up" or (local["health"] == "down" and starts.exists()):
                break
            time.sleep(0.05)
    assert starts.exists(), f"the stand-in engine never started: {server.log()[-2000:]}"
    assert seen[0] == "starting"
    assert seen == ["starting", "up"], f"local's health went {' -> '.join(seen)}"
