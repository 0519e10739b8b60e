"""Migration 0006 (the message tree) on a database that the previous release (migration 0005) made and
filled, on SQLite and PostgreSQL: a new chatstack starts on it, every conversation reads exactly as
before, as a single chain, and goes on from where it was; downgrading undoes the change."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine
from tests.app.test_token_budget_migration import migrate
from tests.support.databases import scratch_postgres
from tests.support.processes import ServerProcess, start_chatstack
from tests.support.sse import answer_text, ask, read_events

pytestmark = pytest.mark.slow

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
CALL = [
    {
        "id": "call_1",
        "type": "function",
        "function": {"name": "calculator", "arguments": '{"expression": "6*7"}'},
    }
]
# (conversation, role, content, tool_calls, tool_call_id, name), in the order they were written:
# two conversations interleaved, as concurrent users leave them.
OLD_MESSAGES: list[tuple[str, str, str, Any, str | None, str | None]] = [
    ("c1", "user", "calc: 6*7", None, None, None),
    ("c2", "user", "hello", None, None, None),
    ("c1", "assistant", "", CALL, None, None),
    ("c2", "assistant", "Echo: hello", None, None, None),
    ("c1", "tool", "42", None, "call_1", "calculator"),
    ("c1", "assistant", "The result is 42.", None, None, None),
    ("c1", "user", "thanks", None, None, None),
    ("c1", "assistant", "Echo: thanks", None, None, None),
]


@pytest.fixture
async def old_database(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A new, empty database of the kind `database_url` is (its URL and an engine on it)."""
    if database_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        made = create_engine(url)
        yield url, made
        await made.dispose()
        return
    async with scratch_postgres("chatstack_tree") as url:
        made = create_engine(url)
        try:
            yield url, made
        finally:
            await made.dispose()


async def fill_at_0005(engine: AsyncEngine) -> None:
    """Rows as chatstack at migration 0005 wrote them (plain SQL: today's models have more columns)."""

    async with engine.begin() as conn:
        for cid, title in (("c1", "Sums"), ("c2", "Greeting"), ("c3", "Empty")):
            await conn.execute(
                text(
                    "INSERT INTO conversations (id, user_id, title, backend, created_at, updated_at) "
                    "VALUES (:id, 'local', :title, 'scripted', :t, :t)"
                ),
                {"id": cid, "title": title, "t": T0},
            )
            await conn.execute(
                text(
                    "INSERT INTO runs (id, conversation_id, status, backend, created_at, llm_calls, "
                    "tool_calls) VALUES (:id, :cid, 'completed', 'scripted', :t, 1, 0)"
                ),
                {"id": f"r_{cid}", "cid": cid, "t": T0},
            )
        for i, (cid, role, content, calls, call_id, name) in enumerate(OLD_MESSAGES):
            await conn.execute(
                text(
                    "INSERT INTO messages (conversation_id, run_id, role, content, tool_calls, tool_call_id, "
                    "name, status, created_at) "
                    "VALUES (:cid, :run, :role, :content, :calls, :call_id, :name, 'complete', :t)"
                ),
                {
                    "cid": cid,
                    "run": f"r_{cid}",
                    "role": role,
                    "content": content,
                    "calls": json.dumps(calls) if calls is not None else None,
                    "call_id": call_id,
                    "name": name,
                    "t": T0 + timedelta(seconds=i),
                },
            )


async def columns(engine: AsyncEngine, table: str) -> set[str]:
    def read(connection: Connection) -> set[str]:
        return {c["name"] for c in inspect(connection).get_columns(table)}

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def test_old_conversations_become_chains_and_read_as_before(
    old_database: tuple[str, AsyncEngine],
    chatstack_env: dict[str, str],
    log_dir: Path,
    scripted: ServerProcess,
) -> None:
    url, engine = old_database
    await migrate(engine, "upgrade", "0005")
    await fill_at_0005(engine)
    async with engine.connect() as conn:
        old_rows = (
            await conn.execute(text("SELECT id, conversation_id, role, content FROM messages ORDER BY id"))
        ).all()

    # What a new release does with it: migrate at start-up, then serve.
    server = start_chatstack({**chatstack_env, "CHATSTACK_DATABASE_URL": url}, log_dir)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            for cid in ("c1", "c2", "c3"):
                body = (await client.get(f"/api/conversations/{cid}")).json()
                expected = [(i, role, content) for i, c, role, content in old_rows if c == cid]
                assert [(m["id"], m["role"], m["content"]) for m in body["messages"]] == expected
                ids = [m["id"] for m in body["messages"]]
                assert [m["parent_id"] for m in body["messages"]] == [None, *ids][: len(ids)]  # one chain
                assert all(m["siblings"] == [m["id"]] for m in body["messages"])
                assert body["active_leaf_id"] == (ids[-1] if ids else None)
            c1 = (await client.get("/api/conversations/c1")).json()["messages"]
            assert c1[1]["tool_calls"][0]["name"] == "calculator"
            assert c1[2]["tool_call_id"] == "call_1"

            # The conversation goes on after its last message, the model seeing all of it...
            events = await ask(client, "c1", "history")
            assert answer_text(events) == (
                "History: user=calc: 6*7 | assistant= | assistant=The result is 42. | user=thanks | "
                "assistant=Echo: thanks | user=history"
            )
            # ...and an old question can be edited into a branch.
            edit = await client.post(
                "/api/conversations/c1/messages", json={"content": "history", "parent_id": c1[3]["id"]}
            )
            assert edit.status_code == 202, edit.text
            await read_events(client, edit.json()["run_id"])
            body = (await client.get("/api/conversations/c1")).json()
            assert body["messages"][4]["siblings"] == [c1[4]["id"], edit.json()["user_message_id"]]
            # The empty conversation starts its tree.
            await ask(client, "c3", "first")
            body = (await client.get("/api/conversations/c3")).json()
            assert [m["parent_id"] for m in body["messages"]] == [None, body["messages"][0]["id"]]
    finally:
        server.stop()

    await migrate(engine, "downgrade", "0005")
    assert "parent_id" not in await columns(engine, "messages")
    assert "active_leaf_id" not in await columns(engine, "conversations")
    async with engine.connect() as conn:
        kept = (
            await conn.execute(text("SELECT id, conversation_id, role, content FROM messages ORDER BY id"))
        ).all()
        conversations = (await conn.execute(text("SELECT id FROM conversations ORDER BY id"))).scalars().all()
    assert kept[: len(old_rows)] == old_rows  # nothing lost, branches included
    assert len(kept) > len(old_rows)
    assert conversations == ["c1", "c2", "c3"]
    await migrate(engine, "upgrade", "head")  # and up again: the backfill chains by id
    async with engine.connect() as conn:
        parents = (
            (
                await conn.execute(
                    text("SELECT parent_id FROM messages WHERE conversation_id = 'c2' ORDER BY id")
                )
            )
            .scalars()
            .all()
        )
    assert parents == [None, old_rows[1][0]]
