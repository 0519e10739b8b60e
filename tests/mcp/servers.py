"""The MCP servers the tests start: the published ones (installed by `make mcp-servers`) and ours."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import ROOT, free_port

HERE = Path(__file__).resolve().parent
EVERYTHING_JS = HERE / "servers/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
FAILING_SERVER = HERE / "failing_server.py"
MCP_SERVER_TIME = Path(sys.executable).parent / "mcp-server-time"

if not EVERYTHING_JS.exists():
    raise RuntimeError(f"{EVERYTHING_JS} is missing: run `make mcp-servers` (npm ci in tests/mcp/servers)")


def time_server(**extra: Any) -> dict[str, Any]:
    return {"name": "time", "command": str(MCP_SERVER_TIME), "args": ["--local-timezone", "UTC"], **extra}


def everything_stdio(**extra: Any) -> dict[str, Any]:
    return {"name": "everything", "command": "node", "args": [str(EVERYTHING_JS), "stdio"], **extra}


def failing_server(down_file: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "failing",
        "command": sys.executable,
        "args": [str(FAILING_SERVER)],
        "env": ["FAILING_MCP_DOWN_FILE"],
        "timeout_s": 2,
        **extra,
    }


@contextmanager
def everything_http() -> Iterator[str]:
    """server-everything's streamable HTTP transport on a free port; yields its `/mcp` URL."""
    port = free_port()
    process = subprocess.Popen(
        ["node", str(EVERYTHING_JS), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server-everything (streamableHttp) did not start")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
