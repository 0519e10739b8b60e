"""Fixtures for nginx in front of a real chatstack: the app as a subprocess (tests/conftest.py), nginx
started by app.nginx_runner from a prefix under test-output/nginx/ (kept for reading its logs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nginx.support import SSE_PING_S, Front, fresh_prefix, proxy_options, running_front
from tests.support.processes import ServerProcess


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only: what nginx does to a stream does not depend on the database behind the app."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'chatstack.db'}"


@pytest.fixture(scope="module")
def chatstack_env(chatstack_env: dict[str, str]) -> dict[str, str]:
    return {**chatstack_env, "CHATSTACK_SSE_PING_S": str(SSE_PING_S)}


@pytest.fixture(scope="session")
def nginx_output(output_dir: Path) -> Path:
    path = output_dir / "nginx"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def front(chatstack: ServerProcess, nginx_output: Path) -> Iterator[Front]:
    """nginx in front of the module's chatstack."""
    options = proxy_options(chatstack)
    with running_front(options, fresh_prefix(nginx_output, f"front-{options.listen_port}")) as running:
        yield running
