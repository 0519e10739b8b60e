"""Users and API keys: every route needs a key, and one user's ids are another user's 404s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.processes import ServerProcess, start_chatstack, users_cli
from tests.support.sse import new_conversation, read_events, start_message

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def auth_env(chatstack_env: dict[str, str]) -> dict[str, str]:
    return {
        **chatstack_env,
        "CHATSTACK_AUTH": "on",
        "CHATSTACK_AUTH_CACHE_S": "0.5",
        "CHATSTACK_RATE_LIMIT_PER_MINUTE": "6000",
    }


@pytest.fixture(scope="module")
def keys(auth_env: dict[str, str]) -> dict[str, str]:
    found = {}
    for name in ("alice", "bob", "mallory"):
        result = users_cli(auth_env, "create", name)
        assert result.returncode == 0, result.stderr
        found[name] = result.stdout.strip().splitlines()[-1]
        assert found[name].startswith("cs_")
    return found


@pytest.fixture(scope="module")
def server(auth_env: dict[str, str], keys: dict[str, str], log_dir: Path) -> Iterator[ServerProcess]:
    process = start_chatstack(auth_env, log_dir)
    yield process
    process.stop()


@pytest.fixture
async def alice(server: ServerProcess, keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {keys['alice']}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
async def bob(server: ServerProcess, keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {keys['bob']}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
        yield client


def test_cli_lists_users_without_keys(auth_env: dict[str, str], keys: dict[str, str]) -> None:
    listing = users_cli(auth_env, "list").stdout
    assert "alice" in listing
    assert "bob" in listing
    assert keys["alice"] not in listing
    assert keys["alice"][:10] in listing
    duplicate = users_cli(auth_env, "create", "alice")
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr


async def test_every_route_needs_a_key(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as anonymous:
        for method, path in [
            ("get", "/api/backends"),
            ("get", "/api/conversations"),
            ("post", "/api/conversations"),
            ("get", "/api/conversations/x"),
            ("get", "/api/runs/x/events"),
            ("get", "/v1/models"),
            ("post", "/v1/chat/completions"),
        ]:
            response = await anonymous.request(method, path, json={} if method == "post" else None)
            assert response.status_code == 401, (method, path)
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
        bad = await anonymous.get("/api/conversations", headers={"Authorization": "Bearer cs_not-a-key"})
        assert bad.status_code == 401
        assert (await anonymous.get("/healthz")).status_code == 200


async def test_other_users_ids_are_404_on_every_route(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    cid = await new_conversation(alice, title="alice's secret")
    run_id = await start_message(alice, cid, "calc: 2+2")
    await read_events(alice, run_id)

    attempts = [
        ("get", f"/api/conversations/{cid}", None),
        ("patch", f"/api/conversations/{cid}", {"title": "pwned"}),
        ("delete", f"/api/conversations/{cid}", None),
        ("get", f"/api/conversations/{cid}/export", None),
        ("post", f"/api/conversations/{cid}/messages", {"content": "hi"}),
        ("get", f"/api/runs/{run_id}", None),
        ("get", f"/api/runs/{run_id}/events", None),
        ("post", f"/api/runs/{run_id}/cancel", None),
    ]
    for method, path, body in attempts:
        response = await bob.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert "secret" not in response.text
    assert cid not in [c["id"] for c in (await bob.get("/api/conversations")).json()["items"]]
    # Alice's data is untouched.
    detail = (await alice.get(f"/api/conversations/{cid}")).json()
    assert detail["title"] == "alice's secret"
    assert len(detail["messages"]) == 4


async def test_openai_client_uses_the_api_key(server: ServerProcess, keys: dict[str, str]) -> None:
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=keys["bob"], max_retries=0)
    reply = await client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "tokens: 2"}]
    )
    assert reply.choices[0].message.content == "the quick"
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).models.list()


async def test_revoked_key_stops_working(
    server: ServerProcess, auth_env: dict[str, str], keys: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {keys['mallory']}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as mallory:
        assert (await mallory.get("/api/conversations")).status_code == 200
        assert users_cli(auth_env, "revoke", "mallory").returncode == 0
        await asyncio.sleep(1)  # CHATSTACK_AUTH_CACHE_S=0.5
        assert (await mallory.get("/api/conversations")).status_code == 401
    assert "revoked" in users_cli(auth_env, "list").stdout


async def test_concurrent_run_limit_and_rate_limit(
    auth_env: dict[str, str], keys: dict[str, str], log_dir: Path
) -> None:
    env = {**auth_env, "CHATSTACK_MAX_CONCURRENT_RUNS": "2", "CHATSTACK_RATE_LIMIT_PER_MINUTE": "30"}
    limited = start_chatstack(env, log_dir)
    try:
        headers = {"Authorization": f"Bearer {keys['bob']}"}
        async with httpx.AsyncClient(base_url=limited.url, headers=headers, timeout=30) as bob:
            runs = []
            for _ in range(2):
                cid = await new_conversation(bob)
                runs.append(await start_message(bob, cid, "hang"))
            third = await bob.post(
                f"/api/conversations/{await new_conversation(bob)}/messages", json={"content": "x"}
            )
            assert third.status_code == 429
            assert third.json()["error"]["code"] == "too_many_runs"
            for run_id in runs:
                await bob.post(f"/api/runs/{run_id}/cancel")
            statuses = [(await bob.get("/api/backends")).status_code for _ in range(40)]
            assert 429 in statuses
            limited_response = await bob.get("/api/backends")
            assert limited_response.status_code == 429
            assert int(limited_response.headers["retry-after"]) >= 1
            assert limited_response.json()["error"]["code"] == "rate_limited"
        # Another user has a bucket of their own.
        async with httpx.AsyncClient(
            base_url=limited.url, headers={"Authorization": f"Bearer {keys['alice']}"}, timeout=30
        ) as alice:
            assert (await alice.get("/api/backends")).status_code == 200
    finally:
        limited.stop()


async def test_body_limit_is_a_json_413(alice: httpx.AsyncClient) -> None:
    cid = await new_conversation(alice)
    huge = "x" * (10 * 1024 * 1024)
    response = await alice.post(f"/api/conversations/{cid}/messages", json={"content": huge})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"content": "'
        for _ in range(20):
            yield b"y" * 100_000
        yield b'"}'

    chunked = await alice.post(
        f"/api/conversations/{cid}/messages", content=chunks(), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413
    assert (await alice.get(f"/api/conversations/{cid}")).json()["messages"] == []
