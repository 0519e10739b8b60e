"""Load through nginx: 200 conversations at once, several turns each, against the GPU emulator.

Every answer must arrive, and the database must hold exactly the messages that were sent and
answered, in order, once each. The latency chatstack adds over the emulator is written to
test-output/load/ for the record.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from sqlalchemy import select

from app.db.engine import create_engine, session_factory
from app.db.models import Message, Run
from app.nginx_config import ProxyOptions
from app.nginx_runner import NginxProcess
from tests.support.processes import ServerProcess, free_port, start_chatstack, start_emulator

pytestmark = pytest.mark.slow

CONVERSATIONS = 200
TURNS = 3
ANSWER_TOKENS = 24
TIME_SCALE = 0.05


@pytest.fixture(scope="module")
def emulator(log_dir: Path) -> AsyncIterator[ServerProcess]:
    server = start_emulator(log_dir, "qwen-a10g", TIME_SCALE)
    yield server  # type: ignore[misc]
    server.stop()


@pytest.fixture(scope="module")
def app_server(
    emulator: ServerProcess, database_url: str, tmp_path_factory: pytest.TempPathFactory, log_dir: Path
) -> AsyncIterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("load")
    backends = data_dir / "backends.yaml"
    entry = {
        "name": "gpu",
        "base_url": emulator.url,
        "model": "qwen2.5-7b-instruct",
        "max_tokens": ANSWER_TOKENS,
    }
    backends.write_text(yaml.safe_dump({"backends": [entry]}))
    server = start_chatstack(
        {
            "CHATSTACK_DATABASE_URL": database_url,
            "CHATSTACK_BACKENDS_FILE": str(backends),
            "CHATSTACK_DEFAULT_BACKEND": "gpu",
            "CHATSTACK_DATA_DIR": str(data_dir),
            "CHATSTACK_MAX_CONCURRENT_RUNS": "10000",
            "CHATSTACK_RATE_LIMIT_PER_MINUTE": "0",
            "CHATSTACK_LOG_LEVEL": "WARNING",
            "CHATSTACK_UI": "false",
        },
        log_dir,
    )
    yield server  # type: ignore[misc]
    server.stop()


async def one_conversation(
    session: aiohttp.ClientSession, base: str, index: int
) -> list[tuple[float, float]]:
    # aiohttp rather than httpx on the client side: httpx's pool itself adds seconds at 400 connections.
    async with session.post(f"{base}/api/conversations", json={"title": f"load {index}"}) as response:
        assert response.status == 201, await response.text()
        cid = (await response.json())["id"]
    timings = []
    for turn in range(TURNS):
        started = time.perf_counter()
        body = {"content": f"conversation {index} turn {turn}"}
        async with session.post(f"{base}/api/conversations/{cid}/messages", json=body) as response:
            assert response.status == 202, await response.text()
            run_id = (await response.json())["run_id"]
        first = 0.0
        event = ""
        async with session.get(f"{base}/api/runs/{run_id}/events") as stream:
            async for raw in stream.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event: "):
                    event = line[7:]
                    if event == "message.delta" and not first:
                        first = time.perf_counter() - started
                elif line.startswith("data: ") and event == "run.error":
                    raise AssertionError(line)
                elif line.startswith("data: ") and event == "run.finished":
                    assert json.loads(line[6:])["status"] == "completed"
        timings.append((first, time.perf_counter() - started))
    return timings


async def direct_ttft(emulator: ServerProcess, concurrency: int) -> list[float]:
    """The emulator's own time to first token for the same kind of request, without chatstack."""

    async def one(session: aiohttp.ClientSession, i: int) -> float:
        body = {
            "model": "qwen2.5-7b-instruct",
            "stream": True,
            "max_tokens": ANSWER_TOKENS,
            "messages": [{"role": "user", "content": f"conversation {i} turn 0"}],
        }
        started = time.perf_counter()
        async with session.post(f"{emulator.url}/chat/completions", json=body) as response:
            async for raw in response.content:
                if b'"content"' in raw and b'"content": ""' not in raw and b'"content":""' not in raw:
                    return time.perf_counter() - started
        return time.perf_counter() - started

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        return list(await asyncio.gather(*(one(session, i) for i in range(concurrency))))


async def test_200_concurrent_conversations_through_nginx(
    app_server: ServerProcess, emulator: ServerProcess, database_url: str, output_dir: Path
) -> None:
    options = ProxyOptions(
        listen_port=free_port(),
        upstreams=[app_server.url.removeprefix("http://")],
        rate_per_s=10_000,
        burst=10_000,
    )
    async with NginxProcess(options) as nginx:
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
            started = time.perf_counter()
            results = await asyncio.gather(
                *(one_conversation(session, nginx.url, i) for i in range(CONVERSATIONS))
            )
            elapsed = time.perf_counter() - started
    baseline = await direct_ttft(emulator, CONVERSATIONS)

    # The database holds every question and answer exactly once, in order.
    engine = create_engine(database_url)
    async with session_factory(engine)() as session:
        messages = (await session.scalars(select(Message).order_by(Message.id))).all()
        runs = (await session.scalars(select(Run))).all()
    await engine.dispose()
    by_conversation: dict[str, list[Message]] = {}
    for message in messages:
        by_conversation.setdefault(message.conversation_id, []).append(message)
    load = {cid: rows for cid, rows in by_conversation.items() if rows[0].content.startswith("conversation ")}
    assert len(load) == CONVERSATIONS
    for rows in load.values():
        index = rows[0].content.split()[1]
        assert [m.role for m in rows] == ["user", "assistant"] * TURNS
        assert [m.content for m in rows[::2]] == [f"conversation {index} turn {t}" for t in range(TURNS)]
        assert all(m.status == "complete" and m.content for m in rows[1::2])
    load_runs = [r for r in runs if r.conversation_id in load]
    assert len(load_runs) == CONVERSATIONS * TURNS
    assert {r.status for r in load_runs} == {"completed"}

    ttft = sorted(t for conversation in results for t, _ in conversation)
    total = sorted(t for conversation in results for _, t in conversation)
    report = {
        "conversations": CONVERSATIONS,
        "turns": TURNS,
        "database": database_url.split(":")[0],
        "wall_s": round(elapsed, 2),
        "errors": 0,
        "ttft_p50_ms": round(statistics.median(ttft) * 1000, 1),
        "ttft_p95_ms": round(ttft[int(len(ttft) * 0.95)] * 1000, 1),
        "answer_p50_ms": round(statistics.median(total) * 1000, 1),
        "emulator_direct_ttft_p50_ms": round(statistics.median(baseline) * 1000, 1),
    }
    report["added_ttft_p50_ms"] = round(report["ttft_p50_ms"] - report["emulator_direct_ttft_p50_ms"], 1)
    out = output_dir / "load"
    out.mkdir(exist_ok=True)
    (out / f"report-{report['database']}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
