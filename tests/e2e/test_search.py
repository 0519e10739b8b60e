"""Full-text search over HTTP against real servers, on SQLite and PostgreSQL: what it finds (words,
phrases, prefixes, run output but not tool output), in what order, whose, and what it refuses.

Every test searches for words made unique by a random tag: the PostgreSQL database is shared with the
other modules' tests, which write messages as the same `local` user.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import Connection, bindparam, text

from app.db.engine import create_engine
from app.db.migrate import alembic_config
from app.db.models import UTCDateTime
from tests.support.databases import scratch_postgres
from tests.support.processes import ServerProcess, start_chatstack, users_cli
from tests.support.sse import ask, new_conversation

pytestmark = pytest.mark.slow


def tag() -> str:
    """A word no other message contains (letters only: the same token in both databases)."""
    return "z" + "".join(random.choice("bcdfghjklmnpqrstvwxy") for _ in range(10))


async def search(client: httpx.AsyncClient, q: str, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def highlighted(item: dict[str, Any]) -> list[str]:
    return [item["snippet"][a:b] for a, b in item["highlights"]]


async def test_finds_words_of_questions_and_answers_written_by_a_run(client: httpx.AsyncClient) -> None:
    t = tag()
    cid = await new_conversation(client, title=f"Notes {t}")
    await ask(client, cid, f"Remind me about the {t} <b>invoice</b> for March")
    body = await search(client, f"{t} invoice")
    roles = sorted(item["role"] for item in body["items"])
    assert roles == ["assistant", "user"]  # the scripted model echoes the question
    assert body["total"] == 2
    assert body["has_more"] is False
    for item in body["items"]:
        assert item["conversation_id"] == cid
        assert item["conversation_title"] == f"Notes {t}"
        assert isinstance(item["message_id"], int)
        assert datetime.fromisoformat(item["created_at"]) <= datetime.now(UTC)
        assert sorted(w.lower() for w in highlighted(item)) == sorted([t, "invoice"])
        assert "\x02" not in item["snippet"]
        assert "\x03" not in item["snippet"]
    assert await search(client, f"{t} april") == {"items": [], "total": 0, "has_more": False}


async def test_tool_output_is_not_searched(client: httpx.AsyncClient) -> None:
    n = random.randrange(10**8, 10**9)
    cid = await new_conversation(client)
    events = await ask(client, cid, f"calc: {n}*7")
    assert any(e.type == "tool.finished" for e in events)
    body = await search(client, str(n * 7))
    # The calculator's output row holds the number too, but only the answer quoting it is found.
    assert [item["role"] for item in body["items"]] == ["assistant"]


async def test_phrases_prefixes_and_operators_as_words(client: httpx.AsyncClient) -> None:
    t = tag()
    cid = await new_conversation(client, backend="scripted-plain")
    await ask(client, cid, f"{t} the trip to Rome in spring, OR NOT")
    assert (await search(client, f'{t} "trip to rome"'))["total"] == 2
    assert (await search(client, f'{t} "rome to trip"'))["total"] == 0
    assert (await search(client, f"{t} spri*"))["total"] == 2
    assert (await search(client, f"{t[:6]}*"))["total"] >= 2
    assert (await search(client, f"{t} sprung*"))["total"] == 0
    # Operators of either database's syntax are words here, never syntax.
    assert (await search(client, f"{t} OR NOT"))["total"] == 2
    assert (await search(client, f"{t} AND"))["total"] == 0
    assert (await search(client, f"{t} trip & | ! <-> ( NEAR"))["total"] == 0


async def test_rank_puts_the_best_match_first_and_recent_the_newest(client: httpx.AsyncClient) -> None:
    t = tag()
    cid = await new_conversation(client, backend="scripted-plain")
    filler = " ".join(f"word{i}" for i in range(60))
    await ask(client, cid, f"{t} {t} {t} short")
    await ask(client, cid, f"{filler} {t} {filler}")
    ranked = (await search(client, t, order="rank"))["items"]
    assert len(ranked) == 4
    assert ranked[0]["snippet"].lstrip("…").startswith(f"{t} {t} {t}") or ranked[0]["snippet"].startswith(
        f"Echo: {t} {t} {t}"
    )
    assert "word" not in ranked[0]["snippet"]
    assert "word" not in ranked[1]["snippet"]
    recent = (await search(client, t, order="recent"))["items"]
    ids = [item["message_id"] for item in recent]
    assert ids == sorted(ids, reverse=True)
    assert "word" in recent[0]["snippet"]  # the long answer came last

    first = await search(client, t, order="recent", limit=3)
    rest = await search(client, t, order="recent", limit=3, offset=3)
    assert first["has_more"] is True
    assert rest["has_more"] is False
    assert [i["message_id"] for i in first["items"] + rest["items"]] == ids
    past = await search(client, t, order="recent", offset=10)
    assert past == {"items": [], "total": 4, "has_more": False}


async def test_deleted_conversations_disappear(client: httpx.AsyncClient) -> None:
    t = tag()
    kept, dropped = await new_conversation(client), await new_conversation(client)
    await ask(client, kept, f"{t} kept")
    await ask(client, dropped, f"{t} dropped")
    assert (await search(client, t))["total"] == 4
    assert (await client.delete(f"/api/conversations/{dropped}")).status_code == 204
    body = await search(client, t)
    assert {item["conversation_id"] for item in body["items"]} == {kept}
    assert body["total"] == 2


async def test_regenerated_answers_are_found(client: httpx.AsyncClient) -> None:
    t = tag()
    cid = await new_conversation(client)
    await ask(client, cid, f"{t} once")
    response = await client.post(f"/api/conversations/{cid}/regenerate", json={})
    assert response.status_code == 202
    from tests.support.sse import read_events

    await read_events(client, response.json()["run_id"])
    roles = sorted(item["role"] for item in (await search(client, t))["items"])
    # The question once, and each answer that was kept (one, or two where branches keep the old one).
    assert roles[-1] == "user"
    assert set(roles[:-1]) == {"assistant"}


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({}, 422),
        ({"q": ""}, 422),
        ({"q": "   "}, 422),
        ({"q": '"'}, 422),
        ({"q": "***"}, 422),
        ({"q": "a*"}, 422),
        ({"q": "!@#$%^&()"}, 422),
        ({"q": "x" * 501}, 422),
        ({"q": " ".join(["w"] * 17)}, 422),
        ({"q": "ok", "order": "best"}, 422),
        ({"q": "ok", "limit": 0}, 422),
        ({"q": "ok", "limit": 101}, 422),
        ({"q": "ok", "offset": -1}, 422),
        ({"q": "ok", "limit": "many"}, 422),
        ({"q": '\x00NEAR(a b)\x00 "xy"*^ -y :z'}, 200),
        ({"q": "'; DROP TABLE messages; --"}, 200),
        ({"q": '\\\' & !( <-> :* "" "a""b"'}, 200),
    ],
)
async def test_bad_queries_get_a_json_4xx(
    client: httpx.AsyncClient, params: dict[str, Any], status: int
) -> None:
    response = await client.get("/api/search", params=params)
    assert response.status_code == status, response.text
    body = response.json()
    if status == 422:
        assert body["error"]["code"] in ("invalid_query", "invalid_request")
        assert body["error"]["message"]
    else:
        assert body["total"] >= len(body["items"])
        assert body["has_more"] is (body["total"] > len(body["items"]))


async def test_random_garbage_never_fails(client: httpx.AsyncClient) -> None:
    rng = random.Random(13)
    alphabet = "\"'*-&|!():<>^+\\ \t\nabcNEAROR é中😀\x01"
    for _ in range(60):
        q = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))
        response = await client.get("/api/search", params={"q": q})
        assert response.status_code in (200, 422), (q, response.text)
        assert "error" in response.json() or "items" in response.json()


# Isolation between users, with API keys on


@pytest.fixture(scope="module")
def auth_server(
    chatstack_env: dict[str, str], log_dir: Path
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    env = {**chatstack_env, "CHATSTACK_AUTH": "on", "CHATSTACK_RATE_LIMIT_PER_MINUTE": "6000"}
    keys = {}
    for who in ("ann", "ben"):
        name = f"search-{who}-{uuid.uuid4().hex[:8]}"
        result = users_cli(env, "create", name)
        assert result.returncode == 0, result.stderr
        keys[who] = result.stdout.strip().splitlines()[-1]
    server = start_chatstack(env, log_dir)
    yield server, keys
    server.stop()


async def test_users_find_only_their_own_messages(auth_server: tuple[ServerProcess, dict[str, str]]) -> None:
    server, keys = auth_server
    t = tag()
    clients = {
        who: httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        for who, key in keys.items()
    }
    try:
        ann_cid = await new_conversation(clients["ann"], backend="scripted-plain")
        await ask(clients["ann"], ann_cid, f"{t} secret of ann")
        ben_cid = await new_conversation(clients["ben"], backend="scripted-plain")
        await ask(clients["ben"], ben_cid, f"{t} note of ben")
        ann = await search(clients["ann"], t)
        ben = await search(clients["ben"], f"{t}*")
        assert {i["conversation_id"] for i in ann["items"]} == {ann_cid}
        assert ann["total"] == 2
        assert {i["conversation_id"] for i in ben["items"]} == {ben_cid}
        assert ben["total"] == 2
        assert (await search(clients["ben"], f"{t} secret"))["total"] == 0
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as anonymous:
            assert (await anonymous.get("/api/search", params={"q": t})).status_code == 401
    finally:
        for http in clients.values():
            await http.aclose()


# Messages written before the search migration


@pytest.fixture
async def database_at_0006(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A new database migrated to 0006 (the release before search), holding a conversation."""
    if database_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('old') / 'old.db'}"
        await _fill_at_0006(url)
        yield url
        return
    async with scratch_postgres("chatstack_search") as url:
        await _fill_at_0006(url)
        yield url


async def _fill_at_0006(url: str) -> None:
    engine = create_engine(url)

    def to_0006(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), "0006")

    now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.run_sync(to_0006)
        await conn.execute(
            text(
                "INSERT INTO conversations (id, user_id, title, backend, created_at, updated_at) "
                "VALUES ('old1', 'local', 'Last week', 'scripted', :now, :now)"
            ).bindparams(bindparam("now", type_=UTCDateTime())),
            {"now": now},
        )
        for role, content in [
            ("user", "What is the capital of Australia, quokkaland edition?"),
            ("tool", "quokkaland tool output"),
            ("assistant", "Canberra is the capital of Australia."),
        ]:
            await conn.execute(
                text(
                    "INSERT INTO messages (conversation_id, role, content, status, created_at) "
                    "VALUES ('old1', :role, :content, 'complete', :now)"
                ).bindparams(bindparam("now", type_=UTCDateTime())),
                {"role": role, "content": content, "now": now},
            )
    await engine.dispose()


async def test_migration_indexes_existing_messages(
    database_at_0006: str, chatstack_env: dict[str, str], log_dir: Path
) -> None:
    server = await asyncio.to_thread(
        start_chatstack, {**chatstack_env, "CHATSTACK_DATABASE_URL": database_at_0006}, log_dir
    )
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            body = await search(http, "quokkaland")
            assert [(i["conversation_id"], i["role"]) for i in body["items"]] == [("old1", "user")]
            body = await search(http, '"capital of australia"', order="recent")
            assert [i["role"] for i in body["items"]] == ["assistant", "user"]
            # New messages of the old conversation are indexed as they are written, too.
            await ask(http, "old1", "quokkaland again", backend="scripted-plain")
            assert (await search(http, "quokkaland"))["total"] == 3
    finally:
        server.stop()
