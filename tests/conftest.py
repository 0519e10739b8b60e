"""Shared fixtures: real backend, search and chatstack processes, and both databases."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import yaml

from tests.support.processes import ROOT, ServerProcess, free_port, start_chatstack, start_scripted_backend
from tests.support.search_servers import SearchServerState, searxng_server

PG_ADMIN_URL = os.environ.get("CHATSTACK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def output_dir() -> Path:
    path = ROOT / "test-output"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def log_dir(output_dir: Path) -> Path:
    path = output_dir / "logs"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def scripted(log_dir: Path) -> Iterator[ServerProcess]:
    server = start_scripted_backend(log_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def search() -> Iterator[tuple[str, SearchServerState]]:
    with searxng_server() as served:
        yield served


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    name = f"chatstack_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def write_backends_file(path: Path, scripted_url: str) -> Path:
    offline = f"http://127.0.0.1:{free_port()}/v1"
    entries = [
        {
            "name": "scripted",
            "base_url": scripted_url,
            "model": "scripted",
            "tool_mode": "native",
            "role": "tools",
        },
        {"name": "scripted-prompted", "base_url": scripted_url, "model": "scripted", "tool_mode": "prompted"},
        {
            "name": "scripted-plain",
            "base_url": scripted_url,
            "model": "scripted",
            "tool_mode": "none",
            "role": "throughput",
        },
        {"name": "offline", "base_url": offline, "model": "x", "tool_mode": "native", "connect_timeout_s": 2},
        {
            "name": "flaky",
            "base_url": offline,
            "model": "scripted",
            "connect_timeout_s": 2,
            "fallback": "scripted",
        },
        {"name": "impatient", "base_url": scripted_url, "model": "scripted", "read_timeout_s": 1},
        # Nothing listens here until a test starts a backend it can kill (see test_bad_input.py).
        {"name": "mortal", "base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "scripted"},
    ]
    path.write_text(yaml.safe_dump({"backends": entries}))
    return path


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'chatstack.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="module")
def chatstack_env(
    database_url: str,
    scripted: ServerProcess,
    search: tuple[str, SearchServerState],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    data_dir = tmp_path_factory.mktemp("data")
    backends = write_backends_file(data_dir / "backends.yaml", scripted.url)
    return {
        "CHATSTACK_DATABASE_URL": database_url,
        "CHATSTACK_BACKENDS_FILE": str(backends),
        "CHATSTACK_DEFAULT_BACKEND": "scripted",
        "CHATSTACK_DATA_DIR": str(data_dir),
        "CHATSTACK_SEARCH_PROVIDER": "searxng",
        "CHATSTACK_SEARXNG_URL": search[0],
        "CHATSTACK_HEALTH_INTERVAL_S": "1",
        "CHATSTACK_AGENT_MAX_STEPS": "4",
    }


@pytest.fixture(scope="module")
def chatstack(chatstack_env: dict[str, str], log_dir: Path) -> Iterator[ServerProcess]:
    server = start_chatstack(chatstack_env, log_dir)
    yield server
    server.stop()


@pytest.fixture
async def client(chatstack: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=chatstack.url, timeout=30) as http:
        yield http
