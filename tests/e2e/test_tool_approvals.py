"""Approval before a tool acts, over HTTP against real chatstack servers with the scripted backend: the
calculator is configured `approval: ask`, web search `auto`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from app.db.engine import create_engine, session_factory
from app.db.models import Run
from tests.support.processes import ServerProcess, start_chatstack, users_cli
from tests.support.search_servers import SearchServerState
from tests.support.sse import Event, new_conversation, read_events, start_message

pytestmark = pytest.mark.slow


def approvals_env(chatstack_env: dict[str, str], tmp: Path, **extra: str) -> dict[str, str]:
    tools = tmp / "tools.yaml"
    tools.write_text(
        yaml.safe_dump({"builtin": {"calculator": {"approval": "ask"}, "web_search": {"approval": "auto"}}})
    )
    return {
        **chatstack_env,
        "CHATSTACK_TOOLS_FILE": str(tools),
        "CHATSTACK_UI": "false",
        "CHATSTACK_RATE_LIMIT_PER_MINUTE": "6000",
        **extra,
    }


@pytest.fixture(scope="module")
def env(chatstack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return approvals_env(chatstack_env, tmp_path_factory.mktemp("approvals"))


@pytest.fixture(scope="module")
def server(env: dict[str, str], log_dir: Path) -> Iterator[ServerProcess]:
    process = start_chatstack(env, log_dir)
    yield process
    process.stop()


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


async def until_waiting(client: httpx.AsyncClient, run_id: str, timeout: float = 15) -> list[Event]:
    """The run's events up to its approval request(s), once the run shows as waiting."""
    events = await read_events(client, run_id, timeout=timeout, until="tool.approval_required")
    deadline = asyncio.get_running_loop().time() + timeout
    while (await client.get(f"/api/runs/{run_id}")).json()["status"] != "awaiting_approval":
        assert asyncio.get_running_loop().time() < deadline, "the run never showed as awaiting_approval"
        await asyncio.sleep(0.05)
    return events


async def decide(
    client: httpx.AsyncClient, run_id: str, call_id: str, approve: bool, **extra: Any
) -> httpx.Response:
    return await client.post(
        f"/api/runs/{run_id}/approvals", json={"call_id": call_id, "approve": approve, **extra}
    )


async def run_owner(database_url: str, run_id: str) -> str | None:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            return await session.scalar(select(Run.owner).where(Run.id == run_id))
    finally:
        await engine.dispose()


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events if e.type != "message.delta"]


async def test_approved_call_runs_and_the_stream_goes_on_across_the_pause(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    run_id = await start_message(client, cid, "calc: 6*7")
    # One client follows the whole run, pause included, on one connection.
    follower = asyncio.create_task(read_events(client, run_id, timeout=30))
    head = await until_waiting(client, run_id)
    request = head[-1]
    assert request.type == "tool.approval_required"
    assert request.data["name"] == "calculator"
    assert request.data["server"] == "builtin"
    assert request.data["arguments"] == {"expression": "6*7"}
    assert request.data["expires_at"]
    assert "tool.started" not in types(head)  # nothing ran before the approval
    run = (await client.get(f"/api/runs/{run_id}")).json()
    assert run["status"] == "awaiting_approval"
    detail = (await client.get(f"/api/conversations/{cid}")).json()
    assert detail["active_run_id"] == run_id  # a reload finds the waiting run

    await asyncio.sleep(0.3)
    response = await decide(client, run_id, request.data["call_id"], True)
    assert response.status_code == 200, response.text
    assert response.json()["approved"] is True

    events = await follower
    after = types(events)[types(events).index("tool.approval_required") + 1 :]
    assert after[:3] == ["tool.approval_resolved", "tool.started", "tool.finished"]
    assert after[-1] == "run.finished"
    resolved = next(e for e in events if e.type == "tool.approval_resolved")
    assert resolved.data["approved"] is True
    assert resolved.data["by"] == "local"
    assert resolved.data["waited_ms"] >= 300
    assert next(e for e in events if e.type == "tool.finished").data["output"] == "42"
    ids = [e.id for e in events]
    assert ids == list(range(1, len(ids) + 1))  # one numbering across the pause
    finished = events[-1].data
    assert finished["status"] == "completed"
    assert finished["timings"]["approval_wait_ms"] >= 300
    assert finished["timings"]["total_ms"] >= finished["timings"]["approval_wait_ms"]
    # A late client replays the same stream from the database.
    replay = await read_events(client, run_id, timeout=10)
    assert [(e.id, e.type) for e in replay] == [(e.id, e.type) for e in events]
    run = (await client.get(f"/api/runs/{run_id}")).json()
    assert run["status"] == "completed"
    assert run["approval_wait_ms"] >= 300
    messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[-1]["content"] == "The result is 42."

    # Decided already: the call no longer waits.
    again = await decide(client, run_id, request.data["call_id"], False)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "approval_not_pending"


async def test_denied_call_is_told_to_the_model(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    run_id = await start_message(client, cid, "calc: 2**10")
    call_id = (await until_waiting(client, run_id))[-1].data["call_id"]
    response = await decide(client, run_id, call_id, False, reason="not now")
    assert response.status_code == 200, response.text
    events = await read_events(client, run_id, timeout=30)
    resolved = next(e for e in events if e.type == "tool.approval_resolved")
    assert resolved.data == {
        "call_id": call_id,
        "approved": False,
        "by": "local",
        "reason": "not now",
        "waited_ms": resolved.data["waited_ms"],
    }
    finished_tool = next(e for e in events if e.type == "tool.finished")
    assert finished_tool.data["error"] == "declined: not now"
    assert events[-1].data["status"] == "completed"
    messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
    assert "declined" in messages[-1]["content"]  # the scripted model relays the tool's answer
    assert "not now" in messages[-1]["content"]


async def test_auto_calls_of_the_turn_run_while_the_ask_call_waits(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    run_id = await start_message(client, cid, "calc+search: 1+1")
    await until_waiting(client, run_id)
    events = await read_events(client, run_id, timeout=10, until="tool.finished")
    started = [e.data["name"] for e in events if e.type == "tool.started"]
    assert started == ["web_search"]  # the search ran; the calculator waits
    waiting = [e for e in events if e.type == "tool.approval_required"]
    assert [e.data["name"] for e in waiting] == ["calculator"]
    assert (await decide(client, run_id, waiting[0].data["call_id"], True)).status_code == 200
    events = await read_events(client, run_id, timeout=30)
    assert [e.data["name"] for e in events if e.type == "tool.started"] == ["web_search", "calculator"]
    assert events[-1].data["status"] == "completed"


async def test_waiting_run_holds_its_conversation_and_can_be_cancelled(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    run_id = await start_message(client, cid, "calc: 3+4")
    call_id = (await until_waiting(client, run_id))[-1].data["call_id"]
    busy = await client.post(f"/api/conversations/{cid}/messages", json={"content": "hello?"})
    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "run_in_progress"
    # Other conversations are not held up by it.
    other = await new_conversation(client)
    assert (await read_events(client, await start_message(client, other, "hi"), timeout=30))[-1].data[
        "status"
    ] == "completed"

    follower = asyncio.create_task(read_events(client, run_id, timeout=30))
    await asyncio.sleep(0.2)
    cancelled = await client.post(f"/api/runs/{run_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    events = await follower
    resolved = next(e for e in events if e.type == "tool.approval_resolved")
    assert resolved.data["approved"] is False
    assert resolved.data["reason"] == "cancelled"
    assert "tool.started" not in types(events)
    assert events[-1].data["status"] == "cancelled"
    assert (await decide(client, run_id, call_id, True)).status_code == 409  # nothing waits any more
    # The conversation goes on, its cancelled call closed.
    events = await read_events(client, await start_message(client, cid, "still there?"), timeout=30)
    assert events[-1].data["status"] == "completed"


async def test_unknown_calls_and_runs(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    run_id = await start_message(client, cid, "hi")
    await read_events(client, run_id, timeout=30)
    assert (await decide(client, run_id, "call_nope", True)).status_code == 409
    assert (await decide(client, "0" * 32, "call_nope", True)).status_code == 404
    bad = await client.post(f"/api/runs/{run_id}/approvals", json={"call_id": "x", "approve": "maybe"})
    assert bad.status_code == 422


async def test_unanswered_call_times_out_and_the_model_is_told(
    chatstack_env: dict[str, str], tmp_path: Path, log_dir: Path
) -> None:
    server = start_chatstack(
        approvals_env(chatstack_env, tmp_path, CHATSTACK_APPROVAL_TIMEOUT_S="1.5"), log_dir
    )
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            cid = await new_conversation(client)
            run_id = await start_message(client, cid, "calc: 5-1")
            events = await read_events(client, run_id, timeout=30)
            resolved = next(e for e in events if e.type == "tool.approval_resolved")
            assert resolved.data["approved"] is False
            assert resolved.data["by"] == "timeout"
            assert resolved.data["reason"] == "timed out"
            assert resolved.data["waited_ms"] >= 1500
            assert events[-1].data["status"] == "completed"
            answer = (await client.get(f"/api/conversations/{cid}")).json()["messages"][-1]["content"]
            assert "timed out" in answer
    finally:
        server.stop()


async def test_restart_while_waiting_then_approve(
    chatstack_env: dict[str, str], tmp_path: Path, log_dir: Path
) -> None:
    env = approvals_env(chatstack_env, tmp_path)
    server = start_chatstack(env, log_dir)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            cid = await new_conversation(client)
            run_id = await start_message(client, cid, "calc: 12*12")
            head = await until_waiting(client, run_id)
    finally:
        server.kill()  # SIGKILL: nothing is kept in memory for the pause
    server = start_chatstack(env, log_dir)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            assert (await client.get(f"/api/runs/{run_id}")).json()["status"] == "awaiting_approval"
            # A client resuming after the last event it saw gets the rest, across the restart.
            follower = asyncio.create_task(read_events(client, run_id, last_event_id=head[-1].id, timeout=30))
            await asyncio.sleep(0.3)
            assert (await decide(client, run_id, head[-1].data["call_id"], True)).status_code == 200
            tail = await follower
            assert tail[0].id == head[-1].id + 1
            assert types(tail)[:3] == ["tool.approval_resolved", "tool.started", "tool.finished"]
            assert tail[-1].data["status"] == "completed"
            messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
            assert messages[-1]["content"] == "The result is 144."
    finally:
        server.stop()


@pytest.fixture(scope="module")
def auth_server(env: dict[str, str], log_dir: Path) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    auth_env = {**env, "CHATSTACK_AUTH": "on", "CHATSTACK_AUTH_CACHE_S": "0.5"}
    keys = {}
    for name in ("approver-a", "approver-b"):
        result = users_cli(auth_env, "create", f"{name}-{uuid.uuid4().hex[:8]}")
        assert result.returncode == 0, result.stderr
        keys[name] = result.stdout.strip().splitlines()[-1]
    process = start_chatstack(auth_env, log_dir)
    yield process, keys
    process.stop()


async def test_another_users_run_is_not_found(auth_server: tuple[ServerProcess, dict[str, str]]) -> None:
    server, keys = auth_server
    owner = httpx.AsyncClient(
        base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {keys['approver-a']}"}
    )
    other = httpx.AsyncClient(
        base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {keys['approver-b']}"}
    )
    async with owner, other:
        cid = await new_conversation(owner)
        run_id = await start_message(owner, cid, "calc: 9*9")
        call_id = (await until_waiting(owner, run_id))[-1].data["call_id"]
        refused = await decide(other, run_id, call_id, True)
        assert refused.status_code == 404
        assert (await owner.get(f"/api/runs/{run_id}")).json()["status"] == "awaiting_approval"
        assert (await decide(owner, run_id, call_id, True)).status_code == 200
        events = await read_events(owner, run_id, timeout=30)
        resolved = next(e for e in events if e.type == "tool.approval_resolved")
        assert resolved.data["by"].startswith("approver-a")
        assert events[-1].data["status"] == "completed"


async def test_approval_on_another_replica_resumes_there_and_streams_everywhere(
    env: dict[str, str], log_dir: Path
) -> None:
    a = start_chatstack({**env, "CHATSTACK_HEARTBEAT_S": "0.5"}, log_dir)
    b = start_chatstack({**env, "CHATSTACK_HEARTBEAT_S": "0.5"}, log_dir)
    try:
        async with (
            httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
            httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
        ):
            cid = await new_conversation(on_a)
            run_id = await start_message(on_a, cid, "calc: 7*8")
            call_id = (await until_waiting(on_a, run_id))[-1].data["call_id"]
            # Followers on both replicas, through the pause.
            followers = [asyncio.create_task(read_events(c, run_id, timeout=30)) for c in (on_a, on_b)]
            await asyncio.sleep(0.3)
            assert (await decide(on_b, run_id, call_id, True)).status_code == 200
            for events in await asyncio.gather(*followers):
                assert [e.id for e in events] == list(range(1, len(events) + 1))
                assert "tool.approval_resolved" in types(events)
                assert events[-1].data["status"] == "completed"
            assert await run_owner(env["CHATSTACK_DATABASE_URL"], run_id) == b.url  # it resumed on b
            messages = (await on_a.get(f"/api/conversations/{cid}")).json()["messages"]
            assert messages[-1]["content"] == "The result is 56."
    finally:
        a.stop()
        b.stop()


async def test_approval_before_the_turns_other_calls_finished(
    client: httpx.AsyncClient, search: tuple[str, SearchServerState]
) -> None:
    search[1].delay_s = 1.5  # the search of the same turn is still running when the user approves
    try:
        cid = await new_conversation(client)
        run_id = await start_message(client, cid, "calc+search: 3+3")
        head = await read_events(client, run_id, timeout=15, until="tool.approval_required")
        response = await decide(client, run_id, head[-1].data["call_id"], True)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "running"  # not paused yet: it resumes once it has
        events = await read_events(client, run_id, timeout=30)
    finally:
        search[1].delay_s = 0.0
    order = types(events)
    assert order.index("tool.approval_resolved") > order.index("tool.finished")  # after the search
    assert [e.data["name"] for e in events if e.type == "tool.started"] == ["web_search", "calculator"]
    assert events[-1].data["status"] == "completed"


async def test_deleting_a_conversation_whose_run_waits(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    run_id = await start_message(client, cid, "calc: 1+2")
    await until_waiting(client, run_id)
    assert (await client.delete(f"/api/conversations/{cid}")).status_code == 204
    assert (await client.get(f"/api/runs/{run_id}")).status_code == 404
