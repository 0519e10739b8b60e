"""Two replicas with `CHATSTACK_REDIS_URL` share each user's rate limit (the real Redis on this machine)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import write_backends_file
from tests.support.processes import ServerProcess, start_chatstack

pytestmark = pytest.mark.slow

PER_MINUTE = 5


@pytest.fixture(scope="module")
def replicas(
    postgres_url: str, scripted: ServerProcess, log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServerProcess]]:
    data_dir = tmp_path_factory.mktemp("shared-limit")
    env = {
        "CHATSTACK_DATABASE_URL": postgres_url,
        "CHATSTACK_BACKENDS_FILE": str(write_backends_file(data_dir / "backends.yaml", scripted.url)),
        "CHATSTACK_DEFAULT_BACKEND": "scripted",
        "CHATSTACK_DATA_DIR": str(data_dir),
        "CHATSTACK_UI": "false",
        "CHATSTACK_RATE_LIMIT_PER_MINUTE": str(PER_MINUTE),
        "CHATSTACK_REDIS_URL": "redis://127.0.0.1:6379/0",
        "CHATSTACK_REDIS_KEY_PREFIX": f"test-{uuid.uuid4().hex[:10]}",
    }
    servers = [start_chatstack(env, log_dir), start_chatstack(env, log_dir)]
    yield servers
    for server in servers:
        server.stop()


def test_the_limit_counts_requests_to_every_replica(replicas: list[ServerProcess]) -> None:
    first, second = replicas
    statuses = [
        httpx.get(f"{server.url}/api/conversations", timeout=10).status_code
        for server in (first, second, first, second, first)
    ]
    assert statuses == [200] * PER_MINUTE
    # Each replica has seen fewer than five requests; together they used the user's minute.
    refused = httpx.get(f"{second.url}/api/conversations", timeout=10)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60 // PER_MINUTE
