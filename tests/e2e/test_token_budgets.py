"""Token budgets per user: usage counted from what backends report, through agent runs, `/v1` agent and
`/v1` proxy alike; a 429 with the reset time once the budget is used up; `GET /api/usage`; the CLI; usage
that survives restarts and that replicas share."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import ServerProcess, start_chatstack, users_cli
from tests.support.sse import new_conversation, read_events, start_message

pytestmark = pytest.mark.slow

ENV_BUDGET = 2000
USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace")
# The PostgreSQL database is shared by every module of a test session, and other modules create users
# called alice and bob too: names of this module's own.
NAME = {user: f"{user}-budget-{uuid.uuid4().hex[:6]}" for user in USERS}


@pytest.fixture(scope="module")
def budget_env(chatstack_env: dict[str, str]) -> dict[str, str]:
    return {
        **chatstack_env,
        "CHATSTACK_AUTH": "on",
        "CHATSTACK_RATE_LIMIT_PER_MINUTE": "6000",
        "CHATSTACK_USER_TOKEN_BUDGET": str(ENV_BUDGET),
        "CHATSTACK_UI": "false",
    }


@pytest.fixture(scope="module")
def keys(budget_env: dict[str, str]) -> dict[str, str]:
    found = {}
    for name in USERS:
        result = users_cli(budget_env, "create", NAME[name])
        assert result.returncode == 0, result.stderr
        found[name] = result.stdout.strip().splitlines()[-1]
    return found


@pytest.fixture(scope="module")
def server(budget_env: dict[str, str], keys: dict[str, str], log_dir: Path) -> Iterator[ServerProcess]:
    process = start_chatstack(budget_env, log_dir)
    yield process
    process.stop()


@asynccontextmanager
async def as_user(server: ServerProcess, key: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
        yield client


async def usage_of(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/usage")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def total(usage: dict[str, int]) -> int:
    return usage["prompt_tokens"] + usage["completion_tokens"]


async def agent_run(client: httpx.AsyncClient, content: str) -> dict[str, int]:
    """An agent run through the conversations API; the usage its `run.finished` event reports."""
    cid = await new_conversation(client)
    events = await read_events(client, await start_message(client, cid, content))
    assert events[-1].data["status"] == "completed", events[-1].data
    usage: dict[str, int] = events[-1].data["usage"]
    # The run's usage is the sum of its model calls' usage.
    calls = [e.data["usage"] for e in events if e.type == "message.completed" and e.data["usage"]]
    assert len(calls) >= 1
    assert usage["prompt_tokens"] == sum(c["prompt_tokens"] for c in calls)
    return usage


async def v1(client: httpx.AsyncClient, model: str, content: str, **extra: Any) -> dict[str, int]:
    """A non-streaming `/v1` completion; the usage it reports."""
    response = await client.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": content}], **extra},
    )
    assert response.status_code == 200, response.text
    usage: dict[str, int] = response.json()["usage"]
    return usage


async def v1_stream(
    client: httpx.AsyncClient, model: str, content: str, **extra: Any
) -> list[dict[str, Any]]:
    """A streaming `/v1` completion: every chunk the client received, up to `[DONE]`."""
    chunks: list[dict[str, Any]] = []
    body = {"model": model, "messages": [{"role": "user", "content": content}], "stream": True, **extra}
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200, await response.aread()
        done = False
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            chunks.append(json.loads(data))
    assert done
    return chunks


def streamed_usage(chunks: list[dict[str, Any]]) -> dict[str, int]:
    reported: list[dict[str, int]] = [c["usage"] for c in chunks if c.get("usage")]
    assert len(reported) == 1, chunks
    assert chunks[-1]["choices"] == []
    return reported[0]


def words(text: str) -> int:
    return len(text.split())


def next_midnight() -> datetime:
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


def assert_exhausted(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "token_budget_exhausted"
    resets = next_midnight()
    assert resets.isoformat().replace("+00:00", "Z") in error["message"]
    retry_after = int(response.headers["retry-after"])
    assert abs(retry_after - (resets - datetime.now(UTC)).total_seconds()) < 60


async def test_usage_counts_what_every_path_reports(server: ServerProcess, keys: dict[str, str]) -> None:
    async with as_user(server, keys["alice"]) as alice:
        before = await usage_of(alice)
        assert before["used"] == 0
        assert before["by_backend"] == []
        assert before["period"] == "day"
        assert before["budget"] == ENV_BUDGET
        assert before["remaining"] == ENV_BUDGET
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        assert datetime.fromisoformat(before["period_start"]) == today
        assert datetime.fromisoformat(before["resets_at"]) == next_midnight()

        reported = [
            await agent_run(alice, "calc: 6*7"),  # two model calls and a tool step
            await v1(alice, "agent", "tokens: 5"),
            streamed_usage(
                await v1_stream(alice, "agent/scripted", "tokens: 6", stream_options={"include_usage": True})
            ),
            await v1(alice, "scripted", "tokens: 7"),
            streamed_usage(
                await v1_stream(alice, "scripted", "tokens: 8", stream_options={"include_usage": True})
            ),
        ]
        # The client did not ask for usage: chatstack asked the backend for it and kept it from the
        # client, who gets exactly the stream it asked for.
        plain = await v1_stream(alice, "scripted", "tokens: 9")
        assert not any("usage" in c for c in plain)
        assert plain[-1]["choices"][0]["finish_reason"] == "stop"
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in plain).split() == (
            ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]
        )
        # The scripted backend reports the prompt's words and the tokens it sent.
        reported.append({"prompt_tokens": words("tokens: 9"), "completion_tokens": 9})
        off = await v1_stream(alice, "scripted", "tokens: 3", stream_options={"include_usage": False})
        assert not any("usage" in c for c in off)
        reported.append({"prompt_tokens": 2, "completion_tokens": 3})

        after = await usage_of(alice)
        assert after["used"] == sum(total(u) for u in reported)
        assert after["remaining"] == max(ENV_BUDGET - after["used"], 0)
        # Every call here ran on the `scripted` backend.
        assert [b["backend"] for b in after["by_backend"]] == ["scripted"]
        row = after["by_backend"][0]
        assert row["prompt_tokens"] == sum(u["prompt_tokens"] for u in reported)
        assert row["completion_tokens"] == sum(u["completion_tokens"] for u in reported)
        assert row["total_tokens"] == after["used"]


async def test_usage_is_counted_per_backend(server: ServerProcess, keys: dict[str, str]) -> None:
    async with as_user(server, keys["dave"]) as dave:
        plain = await v1(dave, "scripted-plain", "tokens: 4")
        cid = await new_conversation(dave, backend="scripted-prompted")
        events = await read_events(dave, await start_message(dave, cid, "hello there"))
        prompted = events[-1].data["usage"]
        by_backend = {b["backend"]: b for b in (await usage_of(dave))["by_backend"]}
        assert set(by_backend) == {"scripted-plain", "scripted-prompted"}
        assert by_backend["scripted-plain"]["total_tokens"] == total(plain)
        assert by_backend["scripted-prompted"]["total_tokens"] == total(prompted)


async def test_a_run_that_fails_still_counts_what_it_used(
    server: ServerProcess, keys: dict[str, str]
) -> None:
    async with as_user(server, keys["grace"]) as grace:
        cid = await new_conversation(grace)
        # The tool step's model call completes; the answer's call breaks off mid-stream.
        events = await read_events(grace, await start_message(grace, cid, "calc: 2+2\nfail: midstream"))
        assert events[-1].data["status"] == "failed"
        used = events[-1].data["usage"]
        assert total(used) > 0
        assert (await usage_of(grace))["used"] == total(used)


async def test_one_users_usage_never_shows_for_another(server: ServerProcess, keys: dict[str, str]) -> None:
    async with as_user(server, keys["erin"]) as erin, as_user(server, keys["frank"]) as frank:
        assert (await usage_of(erin))["used"] == 0
        reported = await v1(frank, "scripted", "tokens: 12")
        await agent_run(frank, "tokens: 3")
        assert (await usage_of(erin))["used"] == 0
        assert (await usage_of(erin))["by_backend"] == []
        mine = await v1(erin, "scripted", "tokens: 2")
        assert (await usage_of(erin))["used"] == total(mine)
        assert (await usage_of(frank))["used"] > total(reported)


async def test_budget_from_the_environment_is_enforced_everywhere(
    server: ServerProcess, keys: dict[str, str]
) -> None:
    async with as_user(server, keys["carol"]) as carol:
        cid = await new_conversation(carol)
        await read_events(carol, await start_message(carol, cid, "tokens: 2"))
        assert (await usage_of(carol))["remaining"] > 0
        # One call may go over the budget (its usage is known only when it ends): a long prompt does.
        await v1(carol, "scripted", " ".join(["word"] * ENV_BUDGET))
        usage = await usage_of(carol)
        assert usage["used"] > ENV_BUDGET
        assert usage["remaining"] == 0

        assert_exhausted(await carol.post(f"/api/conversations/{cid}/messages", json={"content": "more"}))
        assert_exhausted(await carol.post(f"/api/conversations/{cid}/regenerate", json={}))
        message = {"messages": [{"role": "user", "content": "hi"}]}
        for model in ("agent", "agent/scripted", "scripted"):
            assert_exhausted(await carol.post("/v1/chat/completions", json={"model": model, **message}))
            assert_exhausted(
                await carol.post("/v1/chat/completions", json={"model": model, "stream": True, **message})
            )
        # Nothing was started or stored by the refused requests.
        detail = (await carol.get(f"/api/conversations/{cid}")).json()
        assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
        assert (await usage_of(carol))["used"] == usage["used"]
        # Reading is still allowed.
        assert (await carol.get("/api/conversations")).status_code == 200


async def test_budget_set_with_the_cli(
    server: ServerProcess, budget_env: dict[str, str], keys: dict[str, str]
) -> None:
    set_budget = users_cli(budget_env, "set-budget", NAME["bob"], "100")
    assert set_budget.returncode == 0, set_budget.stderr
    assert NAME["bob"] in users_cli(budget_env, "list").stdout
    async with as_user(server, keys["bob"]) as bob:
        usage = await usage_of(bob)
        assert (usage["budget"], usage["used"], usage["remaining"]) == (100, 0, 100)
        cid = await new_conversation(bob)
        first = await agent_run(bob, "tokens: 150")  # allowed: under budget when it starts
        assert total(first) > 100
        assert_exhausted(await bob.post(f"/api/conversations/{cid}/messages", json={"content": "again"}))
        assert (await usage_of(bob))["used"] == total(first)

        table = users_cli(budget_env, "usage")
        assert table.returncode == 0, table.stderr
        line = next(r for r in table.stdout.splitlines() if r.split() and r.split()[0] == NAME["bob"])
        assert line.split() == [NAME["bob"], str(total(first)), "100", "0"]
        carol = next(r for r in table.stdout.splitlines() if r.split() and r.split()[0] == NAME["carol"])
        assert carol.split()[2:4] == [str(ENV_BUDGET), "(default)"]
        assert "resets at " + next_midnight().isoformat().replace("+00:00", "Z") in table.stdout

        assert users_cli(budget_env, "set-budget", NAME["bob"], "unlimited").returncode == 0
        usage = await usage_of(bob)
        assert (usage["budget"], usage["remaining"]) == (None, None)
        # The server trusts what it read for CHATSTACK_TOKEN_BUDGET_CACHE_S (1 s): bob may start
        # again within that.
        await wait_until_allowed(bob, cid)

        assert users_cli(budget_env, "set-budget", NAME["bob"], "default").returncode == 0
        assert (await usage_of(bob))["budget"] == ENV_BUDGET

        refused = users_cli(budget_env, "set-budget", NAME["bob"], "lots")
        assert refused.returncode == 2
        assert "whole number" in refused.stderr
        unknown = users_cli(budget_env, "set-budget", "nobody", "5")
        assert unknown.returncode == 1
        assert "no user named 'nobody'" in unknown.stderr


async def wait_until_allowed(client: httpx.AsyncClient, cid: str, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await client.post(f"/api/conversations/{cid}/messages", json={"content": "tokens: 1"})
        if response.status_code == 202:
            await read_events(client, response.json()["run_id"])
            return
        assert_exhausted(response)
        assert asyncio.get_running_loop().time() < deadline, "the new budget never took effect"
        await asyncio.sleep(0.2)


async def test_usage_survives_a_restart(
    budget_env: dict[str, str], keys: dict[str, str], log_dir: Path
) -> None:
    """A chatstack of its own, stopped and started again: the count is in SQL, not in a process."""
    first = start_chatstack(budget_env, log_dir)
    try:
        async with as_user(first, keys["erin"]) as erin:
            before = (await usage_of(erin))["used"]
            reported = await v1(erin, "scripted", "tokens: 5")
            counted = await usage_of(erin)
            assert counted["used"] == before + total(reported)
    finally:
        first.stop()
    second = start_chatstack(budget_env, log_dir)
    try:
        async with as_user(second, keys["erin"]) as erin:
            assert await usage_of(erin) == counted
    finally:
        second.stop()


async def eventually(read: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 10) -> None:
    """Wait until `read()` returns `expected`: replicas write what they counted every 0.5 s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (value := await read()) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{value!r} never became {expected!r}"
        await asyncio.sleep(0.1)


async def test_replicas_share_one_budget(
    budget_env: dict[str, str], keys: dict[str, str], log_dir: Path
) -> None:
    assert users_cli(budget_env, "set-budget", NAME["frank"], "unlimited").returncode == 0
    replicas = [start_chatstack(budget_env, log_dir), start_chatstack(budget_env, log_dir)]
    try:
        async with as_user(replicas[0], keys["frank"]) as on_a, as_user(replicas[1], keys["frank"]) as on_b:
            before = (await usage_of(on_a))["used"]
            # Both replicas add to the same rows at once: every call counts.
            calls = [v1(client, "scripted", f"tokens: {n}") for n in range(1, 11) for client in (on_a, on_b)]
            reported = await asyncio.gather(*calls)
            used = before + sum(total(u) for u in reported)

            async def both() -> list[int]:
                return [(await usage_of(on_a))["used"], (await usage_of(on_b))["used"]]

            await eventually(both, [used, used])

            # A budget used up through one replica is used up on the other.
            assert users_cli(budget_env, "set-budget", NAME["frank"], str(used + 10)).returncode == 0
            await v1(on_a, "scripted", " ".join(["word"] * 20))

            async def remaining_on_b() -> int:
                return int((await usage_of(on_b))["remaining"])

            await eventually(remaining_on_b, 0)
            assert_exhausted(
                await on_b.post(
                    "/v1/chat/completions",
                    json={"model": "scripted", "messages": [{"role": "user", "content": "hi"}]},
                )
            )
            cid = await new_conversation(on_b)
            assert_exhausted(await on_b.post(f"/api/conversations/{cid}/messages", json={"content": "hi"}))
    finally:
        for replica in replicas:
            replica.stop()
