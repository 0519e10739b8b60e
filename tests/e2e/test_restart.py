"""History survives restarts; a run cut off by a crash is marked interrupted, with its partial answer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port, start_chatstack
from tests.support.sse import ask, new_conversation, read_events, start_message

pytestmark = pytest.mark.slow


async def test_history_survives_restart_and_crashed_run_is_interrupted(
    chatstack_env: dict[str, str], log_dir: Path
) -> None:
    port = free_port()
    server = start_chatstack(chatstack_env, log_dir, port=port)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            cid = await new_conversation(client, title="Survivor")
            await ask(client, cid, "calc: 3*3")
            run_id = await start_message(client, cid, "tokens: 500\ndelay: 20")
            await read_events(client, run_id, stop_after=20)
            await asyncio.sleep(0.6)  # let a batch of events reach the database
    finally:
        server.kill()  # SIGKILL: no graceful shutdown, as in a crash

    server = start_chatstack(chatstack_env, log_dir, port=port)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            detail = (await client.get(f"/api/conversations/{cid}")).json()
            assert detail["title"] == "Survivor"
            roles = [m["role"] for m in detail["messages"]]
            assert roles == ["user", "assistant", "tool", "assistant", "user", "assistant"]
            assert detail["messages"][3]["content"] == "The result is 9."
            assert detail["active_run_id"] is None
            run = (await client.get(f"/api/runs/{run_id}")).json()
            assert run["status"] == "interrupted"
            # What was streamed before the crash is kept as the interrupted answer...
            partial = detail["messages"][5]
            assert partial["status"] == "interrupted"
            assert len(partial["content"].split()) >= 10
            # ...and the event stream ends properly, also for a client resuming after the last id it saw.
            events = await read_events(client, run_id, timeout=10)
            assert events[0].type == "run.started"
            assert [e.type for e in events[-2:]] == ["run.error", "run.finished"]
            assert events[-1].data["status"] == "interrupted"
            deltas = [e for e in events if e.type == "message.delta"]
            assert "".join(e.data["text"] for e in deltas) == partial["content"]
            tail = await read_events(client, run_id, last_event_id=deltas[-1].id + 50, timeout=10)
            assert tail[-1].type == "run.finished"
            # The conversation goes on.
            assert (await ask(client, cid, "still there?"))[-1].data["status"] == "completed"
    finally:
        server.stop()


async def test_graceful_shutdown_lets_short_runs_finish(chatstack_env: dict[str, str], log_dir: Path) -> None:
    server = start_chatstack(chatstack_env, log_dir)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        cid = await new_conversation(client)
        run_id = await start_message(client, cid, "tokens: 40\ndelay: 25")
        await read_events(client, run_id, stop_after=3)
        server.stop()  # SIGTERM while the answer is streaming: about 1 s of answer is left
    server = start_chatstack(chatstack_env, log_dir)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            run = (await client.get(f"/api/runs/{run_id}")).json()
            assert run["status"] == "completed", run
            messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
            assert len(messages[-1]["content"].split()) == 40
    finally:
        server.stop()
