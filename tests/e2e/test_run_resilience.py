"""Runs under stress: the per-user run limit holds under a burst (also across replicas), a database
outage mid-run still ends the run and unlocks its conversation, and a backend dying mid-stream is
reported in words a user understands."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.conftest import PG_ADMIN_URL
from tests.support.processes import ServerProcess, start_chatstack, start_scripted_backend
from tests.support.sse import answer_text, new_conversation, read_events, start_message

pytestmark = pytest.mark.slow

LIMIT = 4
BURST = 50


async def _admin(sql: str, database: str | None = None) -> None:
    url = PG_ADMIN_URL if database is None else f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{database}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of this module's own: the limit counts every running run of the one local user, and
    the outage test makes the whole database read-only."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'chatstack.db'}"
        return
    name = f"chatstack_resilience_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def limited_env(chatstack_env: dict[str, str]) -> dict[str, str]:
    # No browser UI: these tests speak only to the API, and start several servers.
    return {
        **chatstack_env,
        "CHATSTACK_MAX_CONCURRENT_RUNS": str(LIMIT),
        "CHATSTACK_HEARTBEAT_S": "0.5",
        "CHATSTACK_UI": "false",
    }


async def _burst(servers: list[ServerProcess]) -> tuple[list[str], list[httpx.Response]]:
    """BURST conversations, then one message to each, all at once, spread over `servers`."""
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=s.url, timeout=60, limits=httpx.Limits(max_connections=BURST))
            )
            for s in servers
        ]
        on = [clients[i % len(clients)] for i in range(BURST)]
        conversations = [await new_conversation(client) for client in on]
        responses = list(
            await asyncio.gather(
                *(
                    client.post(f"/api/conversations/{cid}/messages", json={"content": "hang"})
                    for client, cid in zip(on, conversations, strict=True)
                )
            )
        )
        started = [r.json()["run_id"] for r in responses if r.status_code == 202]
        for run_id in started:  # leave no run behind for the next test
            await clients[0].post(f"/api/runs/{run_id}/cancel")
    return started, responses


def _assert_exactly_the_limit(started: list[str], responses: list[httpx.Response]) -> None:
    statuses = sorted(r.status_code for r in responses)
    assert len(started) == LIMIT, statuses
    assert statuses == [202] * LIMIT + [429] * (BURST - LIMIT), statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "too_many_runs"
    assert refused.headers["retry-after"]


async def test_a_burst_of_messages_starts_exactly_the_run_limit(
    limited_env: dict[str, str], log_dir: Path
) -> None:
    server = start_chatstack(limited_env, log_dir)
    try:
        started, responses = await _burst([server])
        _assert_exactly_the_limit(started, responses)
    finally:
        server.stop()


async def test_the_run_limit_holds_across_two_replicas_sharing_the_database(
    limited_env: dict[str, str], log_dir: Path
) -> None:
    servers = [start_chatstack(limited_env, log_dir), start_chatstack(limited_env, log_dir)]
    try:
        started, responses = await _burst(servers)
        _assert_exactly_the_limit(started, responses)
        # Both replicas took part in the burst, and once the runs are stopped new ones start again.
        async with httpx.AsyncClient(base_url=servers[1].url, timeout=30) as http:
            run_id = await start_message(http, await new_conversation(http), "hello")
            assert (await read_events(http, run_id))[-1].data["status"] == "completed"
    finally:
        for server in servers:
            server.stop()


@asynccontextmanager
async def database_outage(database_url: str) -> AsyncIterator[None]:
    """The database stops taking writes until the block ends, as it does in real outages.

    PostgreSQL: a failover to a read-only server, in effect: every write fails at once.
    SQLite: another process holds the write lock (a backup, a maintenance script); chatstack's writes
    wait out their busy timeout (30 s), then fail.
    """
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        holder = sqlite3.connect(str(url.database), timeout=10, isolation_level=None, check_same_thread=False)
        await asyncio.to_thread(holder.execute, "BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            await asyncio.to_thread(holder.execute, "ROLLBACK")
            holder.close()
        return
    name = url.database
    # Sessions keep the setting they started with: cutting them off makes the server reconnect to
    # the read-only database, and later to the writable one again.
    cut_off = f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    await _admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    await _admin(cut_off)
    try:
        yield
    finally:
        await _admin(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        await _admin(cut_off)


async def test_a_database_outage_mid_run_ends_the_run_and_unlocks_the_conversation(
    database_url: str, limited_env: dict[str, str], log_dir: Path
) -> None:
    env = limited_env
    if database_url.startswith("sqlite"):
        # SQLite's writes wait out their busy timeout (30 s) one after the other: with the events
        # batch and the heartbeat writing several times a second, the run's own write would fail only
        # minutes into the outage. With them rare, it is the first to find the database locked.
        env = {**limited_env, "CHATSTACK_EVENT_FLUSH_S": "600", "CHATSTACK_HEARTBEAT_S": "600"}
    server = start_chatstack(env, log_dir)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            cid = await new_conversation(http)
            question = "tokens: 120\ndelay: 50"  # 6 s of answer: the outage begins well before its end
            run_id = await start_message(http, cid, question)
            live = asyncio.create_task(read_events(http, run_id, timeout=120))
            await read_events(http, run_id, stop_after=3)
            async with database_outage(database_url):
                assert not live.done()
                # The live stream ends during the outage, with the run's error and its end.
                events = await live
                assert [e.type for e in events[-2:]] == ["run.error", "run.finished"], events[-3:]
                assert events[-2].data["code"] == "database_unavailable"
                assert "database" in events[-2].data["message"]
                assert events[-1].data["status"] == "failed"
                assert [e.id for e in events] == list(range(1, len(events) + 1))
                streamed = answer_text(events)
                assert len(streamed.split()) == 120
            # Once the database takes writes again, the conversation is not locked by the old run.
            next_run = await http.post(f"/api/conversations/{cid}/messages", json={"content": "back?"})
            assert next_run.status_code == 202, next_run.text
            assert (await read_events(http, next_run.json()["run_id"]))[-1].data["status"] == "completed"
            # The end of the run was stored: its status, its answer, and its events.
            run = (await http.get(f"/api/runs/{run_id}")).json()
            assert (run["status"], run["error_code"]) == ("failed", "database_unavailable")
            messages = (await http.get(f"/api/conversations/{cid}")).json()["messages"]
            assert [m["content"] for m in messages if m["role"] == "user"] == [question, "back?"]
            assert messages[1]["content"] == streamed
            stored = await read_events(http, run_id)
            assert [(e.id, e.type, e.data) for e in stored] == [(e.id, e.type, e.data) for e in events]
    finally:
        server.stop()
    log = server.log()
    assert "Task exception was never retrieved" not in log
    # Each failing activity is logged when the outage starts, not at every retry.
    assert log.count("retrying until the database answers") <= 2, log[-3000:]


@pytest.mark.parametrize("how", ["scripted", "killed"])
async def test_a_backend_dying_mid_answer_is_reported_in_plain_words(
    how: str, limited_env: dict[str, str], log_dir: Path
) -> None:
    backends = yaml.safe_load(Path(limited_env["CHATSTACK_BACKENDS_FILE"]).read_text())["backends"]
    mortal_url = next(b["base_url"] for b in backends if b["name"] == "mortal")
    mortal = start_scripted_backend(
        log_dir, token_delay_ms=20, port=int(mortal_url.rsplit(":", 1)[1].split("/")[0])
    )
    server = start_chatstack(limited_env, log_dir)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            cid = await new_conversation(http, backend="mortal")
            if how == "scripted":
                events = await read_events(
                    http, await start_message(http, cid, "tokens: 20\nfail: midstream")
                )
            else:
                run_id = await start_message(http, cid, "tokens: 500")
                seen = await read_events(http, run_id, stop_after=5)
                mortal.kill()
                events = seen + await read_events(http, run_id, last_event_id=seen[-1].id)
    finally:
        mortal.stop()
        server.stop()
    error = next(e for e in events if e.type == "run.error")
    assert error.data["code"] == "backend_bad_response"
    message = error.data["message"]
    assert message == "The backend 'mortal' failed: the connection broke off in the middle of the answer"
    assert not re.search(r"[A-Z][a-z]+(Error|Exception)\b|aiohttp|<|\[", message), message
