"""Small pieces of the app: rate limiting, titles, history repair, the event log, export."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from app.event_log import RunEventLog
from app.export import export_filename, export_markdown
from app.history import UNFINISHED_TOOL_RESULT, to_history
from app.rate_limit import LocalRateLimiter, retry_after_header
from app.schemas import Conversation, MessageOut, SourceOut, ToolCallOut
from app.store import title_from


def test_rate_limiter_allows_a_burst_then_refills() -> None:
    limiter = LocalRateLimiter(per_minute=60)
    assert all(limiter.take("u", now=0.0) is None for _ in range(60))
    wait = limiter.take("u", now=0.0)
    assert wait is not None
    assert 0.9 < wait <= 1.0
    assert limiter.take("u", now=1.01) is None
    assert limiter.take("other", now=0.0) is None  # buckets are per user
    assert retry_after_header(0.2) == "1"
    assert LocalRateLimiter(0).take("u") is None


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = LocalRateLimiter(per_minute=10, max_users=100)
    for i in range(1000):
        limiter.take(f"user-{i}", now=0.0)
    assert len(limiter._buckets) == 100


def test_titles() -> None:
    assert title_from("  Hello   world \n again ") == "Hello world again"
    long = title_from("word " * 40)
    assert len(long) <= 61
    assert long.endswith("…")
    assert title_from("   ") == "New chat"


def row(role: str, content: str = "", **kw: Any) -> SimpleNamespace:
    return SimpleNamespace(
        role=role,
        content=content,
        tool_calls=kw.get("tool_calls"),
        tool_call_id=kw.get("tool_call_id"),
        name=kw.get("name"),
    )


def call(call_id: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "calculator", "arguments": "{}"}}


def test_history_closes_tool_calls_left_open() -> None:
    rows = [
        row("user", "q"),
        row("assistant", "", tool_calls=[call("a"), call("b")]),
        row("tool", "1", tool_call_id="a", name="calculator"),
        row("user", "next"),
    ]
    history = to_history(rows)  # type: ignore[arg-type]
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "tool", "user"]
    assert history[3] == {
        "role": "tool",
        "tool_call_id": "b",
        "name": "calculator",
        "content": UNFINISHED_TOOL_RESULT,
    }


def test_history_drops_orphan_results_and_empty_failed_answers() -> None:
    rows = [
        row("user", "q"),
        row("tool", "x", tool_call_id="ghost"),
        row("assistant", ""),
        row("assistant", "ok"),
    ]
    assert to_history(rows) == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "ok"}]  # type: ignore[arg-type]


async def test_event_log_replays_then_follows() -> None:
    log = RunEventLog("r")
    log.append("a", {})
    log.append("b", {})
    seen: list[int] = []

    async def follow() -> None:
        async for record in log.follow(1):
            seen.append(record.id)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0)
    log.append("c", {})
    await asyncio.sleep(0)
    log.close()
    await asyncio.wait_for(task, 1)
    assert seen == [2, 3]
    assert [e.id for e in log.unflushed()] == [1, 2, 3]
    log.mark_flushed(2)
    assert [e.id for e in log.unflushed()] == [3]


def test_markdown_export() -> None:
    now = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    conversation = Conversation(
        id="abc12345xyz", title="Trip: Paris/Rome", backend=None, created_at=now, updated_at=now
    )
    messages = [
        MessageOut(id=1, role="user", content="How far?", status="complete", run_id="r", created_at=now),
        MessageOut(
            id=2,
            role="assistant",
            content="",
            status="complete",
            run_id="r",
            created_at=now,
            tool_calls=[ToolCallOut(id="c", name="web_search", arguments='{"query": "distance"}')],
        ),
        MessageOut(
            id=3,
            role="tool",
            content="line one\nline two",
            status="complete",
            run_id="r",
            created_at=now,
            name="web_search",
            sources=[SourceOut(title="Atlas", url="https://atlas.example")],
        ),
        MessageOut(
            id=4, role="assistant", content="About 1,100 km.", status="cancelled", run_id="r", created_at=now
        ),
    ]
    text = export_markdown(conversation, messages)
    assert text.startswith("# Trip: Paris/Rome\n")
    assert "> **Tool call** `web_search`" in text
    assert "> line one\n> line two" in text
    assert "> - [Atlas](https://atlas.example)" in text
    assert "## Assistant _(cancelled)_" in text
    assert export_filename(conversation, "md") == "trip--paris-rome-abc12345.md"
