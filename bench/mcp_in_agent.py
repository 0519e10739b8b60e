"""One MCP tool call inside a real agent run: the run's `tool.finished` `duration_ms`.

Starts the scripted backend and chatstack (SQLite, in `workdir`) with a tools file naming
server-everything over stdio, then runs agent runs whose model calls `echo` (the scripted backend's
`tool: NAME {json}` directive) and reads each run's events over SSE, like any user. The duration the
agent records spans its tool step: the `tool.started` event, the catalog's adapter and the MCP call,
so against the bare call it shows what an agent run adds to one MCP call.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import aiohttp

from bench.clients.sse import iter_events
from bench.proxy_overhead import BIN, _free_port, _start
from protocol.run_events import ToolFinished, parse_event

PROMPT = 'tool: echo {"message": "ping"}'


async def _tool_durations(url: str, runs: int, warmup: int) -> list[float]:
    durations: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for i in range(warmup + runs):
            async with session.post(f"{url}/api/conversations", json={}) as response:
                response.raise_for_status()
                cid = (await response.json())["id"]
            body = {"content": PROMPT}
            async with session.post(f"{url}/api/conversations/{cid}/messages", json=body) as response:
                response.raise_for_status()
                run_id = (await response.json())["run_id"]
            chunks: list[tuple[float, bytes]] = []
            async with session.get(f"{url}/api/runs/{run_id}/events") as response:
                async for piece in response.content.iter_any():
                    chunks.append((time.perf_counter(), piece))
            finished = [
                event
                for sse in iter_events(chunks)
                if isinstance(event := parse_event(sse.event, sse.data), ToolFinished)
            ]
            if len(finished) != 1 or finished[0].error or finished[0].duration_ms is None:
                raise RuntimeError(f"the agent run did not make one good echo call: {finished!r:.500}")
            if finished[0].server != "everything":
                raise RuntimeError(f"the echo call went to {finished[0].server!r}, not the MCP server")
            if i >= warmup:
                durations.append(finished[0].duration_ms)
            async with session.delete(f"{url}/api/conversations/{cid}"):
                pass
    return durations


def measure_in_agent(runs: int, warmup: int, everything_js: Path, workdir: Path) -> list[float]:
    """`runs` agent runs' `tool.finished` durations (ms) of one MCP `echo` call each."""
    workdir.mkdir(parents=True, exist_ok=True)
    backend_port, app_port = _free_port(), _free_port()
    backend = _start(
        [str(BIN / "python"), "-m", "backends.scripted.server", "--port", str(backend_port)],
        f"http://127.0.0.1:{backend_port}/health",
        {},
        workdir / "backend.log",
    )
    try:
        backends_file = workdir / "backends.yaml"
        backends_file.write_text(
            "backends:\n"
            f"  - {{name: scripted, base_url: 'http://127.0.0.1:{backend_port}/v1', model: scripted,"
            " tool_mode: native, role: tools}\n"
        )
        tools_file = workdir / "tools.yaml"
        server = {"name": "everything", "command": "node", "args": [str(everything_js), "stdio"]}
        tools_file.write_text(json.dumps({"mcp_servers": [server]}))  # JSON is YAML
        app = _start(
            [str(BIN / "chatstack"), "serve", "--port", str(app_port)],
            f"http://127.0.0.1:{app_port}/healthz",
            {
                "CHATSTACK_BACKENDS_FILE": str(backends_file),
                "CHATSTACK_DEFAULT_BACKEND": "scripted",
                "CHATSTACK_TOOLS_FILE": str(tools_file),
                "CHATSTACK_DATA_DIR": str(workdir),
                "CHATSTACK_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'chatstack.db'}",
                "CHATSTACK_LOG_LEVEL": "WARNING",
                "CHATSTACK_RATE_LIMIT_PER_MINUTE": str(10**9),
            },
            workdir / "chatstack.log",
        )
        try:
            url = f"http://127.0.0.1:{app_port}"
            return asyncio.run(_wait_then_measure(url, runs, warmup))
        finally:
            app.send_signal(signal.SIGTERM)
            app.wait(15)
    finally:
        backend.send_signal(signal.SIGTERM)
        backend.wait(15)


async def _wait_then_measure(url: str, runs: int, warmup: int) -> list[float]:
    """The MCP server connects in the background after chatstack is up: wait for its tools."""
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"{url}/api/tools") as response:
                tools = (await response.json())["items"] if response.status == 200 else []
            if any(t.get("server") == "everything" and t.get("status") == "available" for t in tools):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server-everything's tools did not become available: {tools!r:.500}")
            await asyncio.sleep(0.2)
    return await _tool_durations(url, runs, warmup)
