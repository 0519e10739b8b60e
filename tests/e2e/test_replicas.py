"""Two chatstack processes sharing one database: any replica streams, resumes and cancels any run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from sqlalchemy import select, update

from app.db.engine import create_engine, session_factory
from app.db.models import Run
from app.nginx_config import ProxyOptions
from app.nginx_runner import NginxProcess
from tests.support.http_servers import serving
from tests.support.processes import ServerProcess, free_port, start_chatstack
from tests.support.sse import answer_text, new_conversation, read_events, start_message

pytestmark = pytest.mark.slow


def start_replica(chatstack_env: dict[str, str], log_dir: Path) -> ServerProcess:
    """One chatstack replica; a short heartbeat, so that a dead one is noticed quickly."""
    return start_chatstack({**chatstack_env, "CHATSTACK_HEARTBEAT_S": "0.5"}, log_dir)


@asynccontextmanager
async def clients(*servers: ServerProcess) -> AsyncIterator[list[httpx.AsyncClient]]:
    """An HTTP client for each server, in the same order."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(httpx.AsyncClient(base_url=server.url, timeout=30))
            for server in servers
        ]


@pytest.fixture(scope="module")
def replicas(chatstack_env: dict[str, str], log_dir: Path) -> Iterator[list[ServerProcess]]:
    servers = [start_replica(chatstack_env, log_dir), start_replica(chatstack_env, log_dir)]
    yield servers
    for server in servers:
        server.stop()


async def test_run_started_on_one_replica_streams_live_through_the_other(
    replicas: list[ServerProcess],
) -> None:
    a, b = replicas
    async with clients(a, b) as (on_a, on_b):
        cid = await new_conversation(on_a)
        run_id = await start_message(on_a, cid, "tokens: 40\ndelay: 20")
        started = asyncio.get_running_loop().time()
        first = await read_events(on_b, run_id, stop_after=5)
        # Live, not after the fact: the first events arrive long before the answer's ~0.8 s are over.
        assert asyncio.get_running_loop().time() - started < 0.6
        rest = await read_events(on_b, run_id, last_event_id=first[-1].id)
        events = first + rest
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert events[-1].data["status"] == "completed"
        assert len(answer_text(events).split()) == 40
        # Both replicas show the same stored conversation.
        assert (await on_a.get(f"/api/conversations/{cid}")).json() == (
            await on_b.get(f"/api/conversations/{cid}")
        ).json()


async def test_cancel_through_the_other_replica(replicas: list[ServerProcess]) -> None:
    a, b = replicas
    async with clients(a, b) as (on_a, on_b):
        cid = await new_conversation(on_a)
        run_id = await start_message(on_a, cid, "tokens: 400\ndelay: 20")
        await read_events(on_b, run_id, stop_after=5)
        cancelled = await on_b.post(f"/api/runs/{run_id}/cancel")
        assert cancelled.json()["status"] == "cancelled"
        events = await read_events(on_b, run_id)
        assert events[-1].data["status"] == "cancelled"
        # The next message can start on either replica.
        assert (
            await on_b.post(f"/api/conversations/{cid}/messages", json={"content": "hi"})
        ).status_code == 202


async def test_replica_killed_mid_run_gives_a_clear_end_and_keeps_the_answer(
    chatstack_env: dict[str, str], log_dir: Path, replicas: list[ServerProcess]
) -> None:
    doomed = start_replica(chatstack_env, log_dir)
    survivor = replicas[1]
    async with clients(doomed, survivor) as (on_doomed, on_survivor):
        cid = await new_conversation(on_doomed)
        await start_message(on_doomed, cid, "calc: 6*7")
        await asyncio.sleep(1)
        run_id = await start_message(on_doomed, cid, "tokens: 500\ndelay: 20")
        seen = await read_events(on_survivor, run_id, stop_after=25)
        await asyncio.sleep(0.5)  # let a batch of events reach the database
        doomed.kill()
        # The client reconnects (to the survivor) and gets a clear end once the owner is known dead.
        rest = await read_events(on_survivor, run_id, last_event_id=seen[-1].id, timeout=20)
        assert rest[-1].type == "run.finished"
        assert rest[-1].data["status"] == "interrupted"
        assert any(e.type == "run.error" and e.data["code"] == "interrupted" for e in rest)
        detail = (await on_survivor.get(f"/api/conversations/{cid}")).json()
        contents = [m["content"] for m in detail["messages"]]
        assert "The result is 42." in contents, "earlier answers are intact"
        assert detail["messages"][-1]["status"] == "interrupted"
        assert detail["messages"][-1]["content"].startswith("the quick brown")
        assert detail["active_run_id"] is None
        # The conversation continues on the survivor.
        run = await start_message(on_survivor, cid, "still here?")
        assert (await read_events(on_survivor, run))[-1].data["status"] == "completed"


async def test_deleting_through_the_other_replica_stops_the_run(replicas: list[ServerProcess]) -> None:
    a, b = replicas
    async with clients(a, b) as (on_a, on_b):
        cid = await new_conversation(on_a)
        run_id = await start_message(on_a, cid, "tokens: 400\ndelay: 20")
        await read_events(on_b, run_id, stop_after=3)
        assert (await on_b.delete(f"/api/conversations/{cid}")).status_code == 204
        assert (await on_a.get(f"/api/runs/{run_id}")).status_code == 404
        await asyncio.sleep(0.5)
        assert "Traceback" not in a.log()


async def test_two_replicas_behind_nginx_survive_one_being_killed(
    chatstack_env: dict[str, str], log_dir: Path
) -> None:
    first, second = start_replica(chatstack_env, log_dir), start_replica(chatstack_env, log_dir)
    upstreams = [first.url.removeprefix("http://"), second.url.removeprefix("http://")]
    options = ProxyOptions(listen_port=free_port(), upstreams=upstreams, rate_per_s=1000, burst=1000)
    try:
        async with (
            NginxProcess(options) as nginx,
            httpx.AsyncClient(base_url=nginx.url, timeout=30) as client,
        ):
            cid = await new_conversation(client)
            await read_events(client, await start_message(client, cid, "calc: 6*7"))
            run_id = await start_message(client, cid, "tokens: 500\ndelay: 20")
            seen = await read_events(client, run_id, stop_after=20)
            await asyncio.sleep(0.5)  # let a batch of events reach the database
            # Kill whichever replica runs the answer; nginx sends the reconnect to the survivor.
            owner = await owner_of(chatstack_env["CHATSTACK_DATABASE_URL"], run_id)
            victim = first if owner == first.url else second
            assert owner == victim.url
            victim.kill()
            rest = await read_events(client, run_id, last_event_id=seen[-1].id, timeout=30)
            assert rest[-1].type == "run.finished"
            assert rest[-1].data["status"] == "interrupted"
            detail = (await client.get(f"/api/conversations/{cid}")).json()
            assert "The result is 42." in [m["content"] for m in detail["messages"]]
            assert detail["messages"][-1]["status"] == "interrupted"
            again = await start_message(client, cid, "hello")
            assert (await read_events(client, again))[-1].data["status"] == "completed"
    finally:
        first.stop()
        second.stop()


@asynccontextmanager
async def fake_owner(body: bytes) -> AsyncIterator[str]:
    """A replica that answers every event stream with `body`; yields its address."""

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        return response

    app = web.Application()
    app.router.add_get("/api/runs/{run_id}/events", events)
    async with serving(app) as url:
        yield url


async def test_events_relayed_from_the_owner_may_span_several_data_lines(
    chatstack_env: dict[str, str], replicas: list[ServerProcess]
) -> None:
    # An event's data may come in several `data:` lines (joined with LF), with any of the three line
    # ends; the relay must pass it on whole.
    body = (
        b'id: 1\r\nevent: run.started\r\ndata: {"run_id": "r",\r\ndata:  "backend": "b"}\r\n\r\n'
        b'id: 2\revent: message.delta\rdata: {"text":\rdata: "two lines"}\r\r'
        b'id: 3\nevent: run.finished\ndata: {"status": "completed",\ndata: "usage": null}\n\n'
    )
    a, b = replicas
    async with clients(a, b) as (on_a, on_b), fake_owner(body) as owner:
        cid = await new_conversation(on_a)
        run_id = await start_message(on_a, cid, "tokens: 400\ndelay: 20")
        # The run now looks owned by the fake replica: the other replica relays its stream from there.
        await set_owner(chatstack_env["CHATSTACK_DATABASE_URL"], run_id, owner)
        try:
            events = await read_events(on_b, run_id, timeout=20)
        finally:
            await on_a.post(f"/api/runs/{run_id}/cancel")
    assert [(e.id, e.type, e.data) for e in events] == [
        (1, "run.started", {"run_id": "r", "backend": "b"}),
        (2, "message.delta", {"text": "two lines"}),
        (3, "run.finished", {"status": "completed", "usage": None}),
    ]


async def set_owner(database_url: str, run_id: str, owner: str) -> None:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine).begin() as session:
            await session.execute(update(Run).where(Run.id == run_id).values(owner=owner))
    finally:
        await engine.dispose()


async def owner_of(database_url: str, run_id: str) -> str | None:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            return await session.scalar(select(Run.owner).where(Run.id == run_id))
    finally:
        await engine.dispose()
