"""Hostile and broken input, and backends that fail in every way: clear answers, nothing lost."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import aliased

from app.db.engine import create_engine
from app.db.models import Conversation, Message
from tests.support.processes import start_scripted_backend
from tests.support.sse import answer_text, ask, new_conversation, read_events, start_message

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "body",
    [
        b'\xff\xfe{"content": "hi"}',
        b'{"content": "\xc3\x28"}',
        b'{"content": "hi"',
        b"[]",
        b"null",
        b'{"content": "hi", "content": 5}',
    ],
)
async def test_broken_bodies_are_422(client: httpx.AsyncClient, body: bytes) -> None:
    cid = await new_conversation(client)
    response = await client.post(
        f"/api/conversations/{cid}/messages", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert (await client.get(f"/api/conversations/{cid}")).json()["messages"] == []


async def test_control_characters_refused_unicode_kept(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    for bad in ["nul\x00byte", "escape\x1b[31m", "bell\x07"]:
        assert (
            await client.post(f"/api/conversations/{cid}/messages", json={"content": bad})
        ).status_code == 422
    events = await ask(client, cid, "héllo 👋 — 日本語\ttab\nnewline")
    assert answer_text(events) == "Echo: héllo 👋 — 日本語\ttab\nnewline"


async def test_message_over_the_character_limit(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    response = await client.post(f"/api/conversations/{cid}/messages", json={"content": "x" * 200_000})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "message_too_long"


@pytest.mark.parametrize(
    "expression", ["9**9**9", "'a'*10**9", "(" * 5000 + "1" + ")" * 5000, "__import__('os')"]
)
async def test_hostile_calculator_input_is_an_explained_error(
    client: httpx.AsyncClient, expression: str
) -> None:
    cid = await new_conversation(client)
    started = time.monotonic()
    events = await ask(client, cid, f"calc: {expression}")
    finished = next(e for e in events if e.type == "tool.finished")
    assert finished.data["error"]
    assert finished.data["duration_ms"] < 1000
    assert events[-1].data["status"] == "completed"
    assert "problem" in answer_text(events)
    assert time.monotonic() - started < 20
    assert (await client.get("/healthz")).status_code == 200


async def test_ten_thousand_messages(client: httpx.AsyncClient, database_url: str) -> None:
    cid = await new_conversation(client, title="long")
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    rows = [
        {
            "conversation_id": cid,
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"message {i} " + "lorem ipsum " * 20,
            "status": "complete",
            "created_at": now,
        }
        for i in range(10_000)
    ]
    earlier = aliased(Message)
    async with engine.begin() as conn:
        await conn.execute(insert(Message), rows)
        # One chain, each message after the one before it, as the app writes them.
        previous = (
            select(func.max(earlier.id))
            .where(earlier.conversation_id == cid, earlier.id < Message.id)
            .scalar_subquery()
        )
        await conn.execute(update(Message).where(Message.conversation_id == cid).values(parent_id=previous))
        last = select(func.max(Message.id)).where(Message.conversation_id == cid).scalar_subquery()
        await conn.execute(update(Conversation).where(Conversation.id == cid).values(active_leaf_id=last))
    await engine.dispose()

    started = time.monotonic()
    detail = await client.get(f"/api/conversations/{cid}")
    assert detail.status_code == 200
    assert len(detail.json()["messages"]) == 10_000
    events = await ask(client, cid, "and now?")
    assert events[-1].data["status"] == "completed"
    assert answer_text(events) == "Echo: and now?"
    assert time.monotonic() - started < 60
    assert Conversation.__tablename__  # the rows went through the real schema


async def test_slow_backend_times_out_cleanly(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client, backend="impatient")
    events = await ask(client, cid, "hang")  # one token, then silence longer than read_timeout_s=1
    error = next(e for e in events if e.type == "run.error")
    assert error.data["code"] == "backend_timeout"
    messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
    assert messages[-1]["status"] == "error"
    assert messages[-1]["content"] == "Thinking"
    assert (await ask(client, cid, "hello", backend="scripted"))[-1].data["status"] == "completed"


async def test_backend_process_dies_mid_answer(
    client: httpx.AsyncClient, chatstack_env: dict[str, str], log_dir: Path
) -> None:
    backends = yaml.safe_load(Path(chatstack_env["CHATSTACK_BACKENDS_FILE"]).read_text())["backends"]
    url = next(b["base_url"] for b in backends if b["name"] == "mortal")
    backend = start_scripted_backend(
        log_dir, token_delay_ms=20, port=int(url.rsplit(":", 1)[1].split("/")[0])
    )
    try:
        cid = await new_conversation(client, backend="mortal")
        await ask(client, cid, "calc: 5*5")
        run_id = await start_message(client, cid, "tokens: 500")
        seen = await read_events(client, run_id, stop_after=12)
        backend.kill()
        rest = await read_events(client, run_id, last_event_id=seen[-1].id)
        error = next(e for e in rest if e.type == "run.error")
        assert error.data["code"] == "backend_bad_response"
        assert rest[-1].data["status"] == "failed"
        messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
        assert messages[3]["content"] == "The result is 25.", "earlier answers are intact"
        assert messages[-1]["status"] == "error"
        assert messages[-1]["content"] == answer_text(seen + rest)
        assert len(messages[-1]["content"].split()) >= 5
        # With the backend gone, the next message fails before its first token, clearly.
        down = await ask(client, cid, "anyone?")
        assert next(e for e in down if e.type == "run.error").data["code"] == "backend_unavailable"
    finally:
        backend.stop()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/conversations/{cid}/messages", b'{"content": "lone \\ud800 half"}'),
        ("POST", "/api/conversations", b'{"title": "lone \\udfff half"}'),
        ("PATCH", "/api/conversations/{cid}", b'{"title": "x\\ud83d"}'),
    ],
)
async def test_lone_surrogates_are_refused_and_nothing_is_lost(
    client: httpx.AsyncClient, method: str, path: str, body: bytes
) -> None:
    # Valid JSON escapes that are not text: no database or UTF-8 encoder would take them later.
    cid = await new_conversation(client)
    response = await client.request(
        method, path.format(cid=cid), content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    conversation = (await client.get(f"/api/conversations/{cid}")).json()
    assert conversation["messages"] == []
    assert conversation["title"] == "New chat"
