"""An event stream that carries no event for longer than nginx's read timeout stays open, because the app
sends ping comments; without them nginx would cut it. The `hang` directive makes a run go silent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.nginx.support import READ_TIMEOUT_S, Front, fresh_prefix, proxy_options, running_front
from tests.support.processes import ServerProcess, start_chatstack
from tests.support.sse import new_conversation, start_message

pytestmark = pytest.mark.slow


async def follow_idle_run(url: str, idle_s: float) -> tuple[list[str], float, bool]:
    """Start a run that goes silent, follow its events through `url` for `idle_s`, then cancel it.

    Returns the event types seen, when the stream ended (seconds after the first event), and whether
    the stream was still open when the run was cancelled.
    """
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30, read=idle_s * 3)) as client:
        cid = await new_conversation(client)
        run_id = await start_message(client, cid, "hang")
        kinds: list[str] = []
        first_event = asyncio.get_running_loop().create_future()

        async def consume() -> None:
            try:
                async with aconnect_sse(client, "GET", f"/api/runs/{run_id}/events") as source:
                    async for sse in source.aiter_sse():
                        if sse.data:
                            kinds.append(sse.event)
                            if not first_event.done():
                                first_event.set_result(time.monotonic())
            except httpx.HTTPError:
                pass  # the proxy cut the stream: what the control case expects

        reader = asyncio.create_task(consume())
        started = await asyncio.wait_for(first_event, 30)
        await asyncio.wait({reader}, timeout=idle_s)
        open_at_cancel = not reader.done()
        assert (await client.post(f"/api/runs/{run_id}/cancel")).status_code == 200
        await asyncio.wait_for(reader, 30)
        return kinds, time.monotonic() - started, open_at_cancel


async def test_idle_stream_outlives_the_read_timeout(front: Front) -> None:
    idle_s = READ_TIMEOUT_S + 3  # 8 s of silence against a 5 s read timeout, with pings every 2 s
    kinds, lasted_s, open_at_cancel = await follow_idle_run(front.url, idle_s)
    assert open_at_cancel
    assert lasted_s >= idle_s
    assert kinds[0] == "run.started"
    assert kinds[-1] == "run.finished"  # the stream ended because the run did, with its last event


@pytest.fixture(scope="module")
def silent_chatstack(chatstack_env: dict[str, str], log_dir: Path) -> Iterator[ServerProcess]:
    """chatstack that pings only every 60 s: nothing keeps an idle stream alive within nginx's timeout."""
    server = start_chatstack({**chatstack_env, "CHATSTACK_SSE_PING_S": "60"}, log_dir)
    yield server
    server.stop()


async def test_without_pings_nginx_cuts_the_idle_stream(
    silent_chatstack: ServerProcess, nginx_output: Path
) -> None:
    # The control: the same run, proxy and timeout, minus the pings.
    options = proxy_options(silent_chatstack)
    with running_front(options, fresh_prefix(nginx_output, "front-no-pings")) as bare:
        kinds, lasted_s, open_at_cancel = await follow_idle_run(bare.url, READ_TIMEOUT_S + 3)
    assert not open_at_cancel
    assert READ_TIMEOUT_S - 1 <= lasted_s <= READ_TIMEOUT_S + 2.9
    assert "run.finished" not in kinds


@pytest.fixture(scope="module")
def default_chatstack(chatstack_env: dict[str, str], log_dir: Path) -> Iterator[ServerProcess]:
    """chatstack with its default ping interval (15 s)."""
    env = {k: v for k, v in chatstack_env.items() if k != "CHATSTACK_SSE_PING_S"}
    server = start_chatstack(env, log_dir)
    yield server
    server.stop()


@pytest.mark.timeout(240)
async def test_idle_stream_outlives_nginx_default_timeout_at_default_ping(
    default_chatstack: ServerProcess, nginx_output: Path
) -> None:
    # Real numbers: chatstack's default 15 s ping against nginx's own default proxy_read_timeout of
    # 60 s (chatstack's template allows 600 s for slow non-streaming answers), silent for 70 s.
    options = proxy_options(default_chatstack, read_timeout_s=60.0)
    with running_front(options, fresh_prefix(nginx_output, "front-defaults")) as real:
        kinds, lasted_s, open_at_cancel = await follow_idle_run(real.url, 70)
    assert open_at_cancel
    assert lasted_s >= 70
    assert kinds[-1] == "run.finished"
