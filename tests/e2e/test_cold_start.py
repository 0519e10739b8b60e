"""Backends that scale to zero: chatstack waits for a replica to start, says so, and bounds the wait.

The scripted server plays a Ray Serve app with `min_replicas: 0` (see backends/scripted/cold_start.py):
one replica refuses with 503 while starting, as a proxy with no replica does; the other holds the
request, as Ray Serve's handles do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.processes import ServerProcess, start_chatstack, start_scripted_backend
from tests.support.sse import Event, new_conversation, read_events, start_message

pytestmark = pytest.mark.slow

START_S = 5.0


@pytest.fixture(scope="module")
def refusing(log_dir: Path) -> Iterator[ServerProcess]:
    server = start_scripted_backend(
        log_dir, extra_args=["--cold-start-s", str(START_S), "--refuse-while-starting", "--idle-s", "3"]
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def holding(log_dir: Path) -> Iterator[ServerProcess]:
    server = start_scripted_backend(log_dir, extra_args=["--cold-start-s", str(START_S)])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def chatstack_url(
    refusing: ServerProcess, holding: ServerProcess, log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("cold-start")
    entries = [
        {"name": "serverless", "base_url": refusing.url, "model": "scripted", "cold_start_timeout_s": 30},
        {"name": "too-slow", "base_url": holding.url, "model": "scripted", "cold_start_timeout_s": 3},
        {"name": "patient", "base_url": holding.url, "model": "scripted", "cold_start_timeout_s": 30},
    ]
    backends = data_dir / "backends.yaml"
    backends.write_text(yaml.safe_dump({"backends": entries}))
    server = start_chatstack(
        {
            "CHATSTACK_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'chatstack.db'}",
            "CHATSTACK_BACKENDS_FILE": str(backends),
            "CHATSTACK_DEFAULT_BACKEND": "serverless",
            "CHATSTACK_DATA_DIR": str(data_dir),
            "CHATSTACK_HEALTH_INTERVAL_S": "1",
        },
        log_dir,
    )
    yield server.url
    server.stop()


def replica(server: ServerProcess) -> dict[str, object]:
    body: dict[str, object] = httpx.get(server.url.removesuffix("/v1") + "/health").json()
    return body


async def health_of(client: httpx.AsyncClient, name: str) -> str:
    items = (await client.get("/api/backends")).json()["items"]
    return str(next(b["health"] for b in items if b["name"] == name))


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


async def test_a_refused_request_waits_for_the_replica_and_says_so(
    chatstack_url: str, refusing: ServerProcess
) -> None:
    assert replica(refusing)["replica"] == "zero"
    async with httpx.AsyncClient(base_url=chatstack_url, timeout=60) as client:
        conversation = await new_conversation(client, backend="serverless")
        started = time.monotonic()
        run_id = await start_message(client, conversation, "tokens: 5")
        reading = asyncio.create_task(read_events(client, run_id, timeout=60))
        # While the replica starts, the backend list says so.
        while await health_of(client, "serverless") != "starting":
            assert time.monotonic() - started < START_S, "the backend was never shown as starting"
            await asyncio.sleep(0.2)
        events = await reading
        assert await health_of(client, "serverless") == "up"

    kinds = types(events)
    assert kinds[0] == "run.started"
    assert kinds[-1] == "run.finished"
    assert kinds.index("backend.starting") < kinds.index("backend.ready") < kinds.index("message.delta")
    starting = next(e for e in events if e.type == "backend.starting")
    assert starting.data == {"backend": "serverless", "timeout_s": 30}
    waited = next(e for e in events if e.type == "backend.ready").data["waited_ms"]
    assert START_S * 1000 * 0.8 < waited < 30_000
    assert events[-1].data["status"] == "completed"
    assert replica(refusing)["replica_starts"] == 1


async def test_a_start_longer_than_the_bound_fails_clearly_and_the_next_message_works(
    chatstack_url: str, holding: ServerProcess
) -> None:
    async with httpx.AsyncClient(base_url=chatstack_url, timeout=60) as client:
        conversation = await new_conversation(client, backend="too-slow")
        run_id = await start_message(client, conversation, "tokens: 5")
        events = await read_events(client, run_id, timeout=30)
        assert "backend.starting" in types(events)
        error = next(e for e in events if e.type == "run.error")
        assert error.data["code"] == "backend_start_timeout"
        assert "did not start" in error.data["message"]
        assert events[-1].data["status"] == "failed"
        assert await health_of(client, "too-slow") != "starting"

        # The replica this request started comes up; the conversation carries on, on a warm backend.
        deadline = time.monotonic() + 2 * START_S
        while replica(holding)["replica"] != "up":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        response = await client.patch(f"/api/conversations/{conversation}", json={"backend": "patient"})
        assert response.status_code == 200, response.text
        second = await read_events(client, await start_message(client, conversation, "tokens: 3"))
        assert "backend.starting" not in types(second)
        assert second[-1].data["status"] == "completed"
        detail = (await client.get(f"/api/conversations/{conversation}")).json()
        assert [m["role"] for m in detail["messages"]] == ["user", "user", "assistant"]
