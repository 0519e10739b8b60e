"""The embedded model's stack for end-to-end tests: the real engine under its supervisor, and chatstack
configured as `make run` configures it (the shipped backends and tools files), pointed at that engine.

The tests own the engine's lifecycle (one per test module, see tests/local/conftest.py), so chatstack
gets the shipped `local` backend without `kind: embedded`: it must not start an engine itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from app.settings import PACKAGE_TOOLS_FILE
from backends.local.catalogue import get_model
from tests.local.canned_search import canned_search_server
from tests.support.processes import ROOT, ServerProcess, free_port, start_chatstack, start_process

MODEL = get_model(os.environ.get("CHATSTACK_TEST_MODEL") or None)
ENGINE_START_TIMEOUT_S = 1500.0
"""A fresh machine fetches and converts the model first; a loaded two-core machine starts slowly."""
SHIPPED_BACKENDS_FILE = ROOT / "backends" / "backends.yaml"
MCP_SERVER_TIME = Path(sys.executable).parent / "mcp-server-time"
"""Installed into .venv by the dev extra (pinned in constraints.txt)."""


@contextmanager
def running_engine(log_dir: Path, data_dir: Path) -> Iterator[ServerProcess]:
    """The engine, run by `chatstack model serve` (the supervisor) on a free port."""
    port = free_port()
    server = start_process(
        [sys.executable, "-m", "backends.local.cli", "serve"],
        health_url=f"http://127.0.0.1:{port}/health",
        base_url=f"http://127.0.0.1:{port}/v1",
        env={
            "CHATSTACK_ENGINE_PORT": str(port),
            "CHATSTACK_DATA_DIR": str(data_dir),
            "CHATSTACK_MODEL": MODEL.name,
        },
        log_path=log_dir / f"engine-supervisor-{port}.log",
        timeout=ENGINE_START_TIMEOUT_S,
    )
    try:
        yield server
    finally:
        server.stop(timeout=60)
        engine_log = data_dir / "logs" / "engine.log"
        if engine_log.exists():
            (log_dir / f"engine-{port}.log").write_bytes(engine_log.read_bytes())


def shipped_local_backend(engine_url: str) -> dict[str, Any]:
    """The shipped `local` backend (the default of `make run`), served by the test's engine."""
    shipped = yaml.safe_load(SHIPPED_BACKENDS_FILE.read_text())["backends"]
    entry = dict(next(b for b in shipped if b.get("kind") == "embedded"))
    del entry["kind"]
    return {**entry, "base_url": engine_url, "model": MODEL.served_name}


def shipped_tools_with(mcp_servers: list[dict[str, Any]]) -> dict[str, Any]:
    """The shipped tools file (the built-in tools as `make run` offers them) plus `mcp_servers`."""
    tools = yaml.safe_load(PACKAGE_TOOLS_FILE.read_text())
    return {**tools, "mcp_servers": mcp_servers}


def time_server() -> dict[str, Any]:
    """mcp-server-time, run without asking (its calls only read the clock)."""
    return {
        "name": "time",
        "command": str(MCP_SERVER_TIME),
        "args": ["--local-timezone", "UTC"],
        "approval": "auto",
    }


@contextmanager
def default_stack(
    engine: ServerProcess, data_dir: Path, log_dir: Path, tools: Mapping[str, Any]
) -> Iterator[ServerProcess]:
    """chatstack as `make run` starts it (SQLite in its data folder, the `local` backend by default)
    with the tools file `tools`; web search is answered by the canned server, never the internet."""
    backends = data_dir / "backends.yaml"
    backends.write_text(yaml.safe_dump({"backends": [shipped_local_backend(engine.url)]}))
    tools_file = data_dir / "tools.yaml"
    tools_file.write_text(yaml.safe_dump(dict(tools)))
    with canned_search_server() as (search_url, _):
        server = start_chatstack(
            {
                "CHATSTACK_DATA_DIR": str(data_dir),
                # What `make run` uses, set so that a PostgreSQL URL in the tests' environment cannot leak in.
                "CHATSTACK_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'chatstack.db'}",
                "CHATSTACK_BACKENDS_FILE": str(backends),
                "CHATSTACK_DEFAULT_BACKEND": "local",
                "CHATSTACK_TOOLS_FILE": str(tools_file),
                "CHATSTACK_SEARCH_PROVIDER": "searxng",
                "CHATSTACK_SEARXNG_URL": search_url,
                "CHATSTACK_HEALTH_INTERVAL_S": "2",
            },
            log_dir,
        )
        try:
            yield server
        finally:
            server.stop()
