"""Reading chatstack's run events with a real SSE client (httpx-sse)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import aconnect_sse


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    data: dict[str, Any]


async def read_events(
    client: httpx.AsyncClient,
    run_id: str,
    *,
    last_event_id: int | None = None,
    stop_after: int | None = None,
    timeout: float = 30,
    until: str | None = None,
) -> list[Event]:
    """Events of a run until the stream ends (or `stop_after` events, or the first event of type
    `until`, then disconnect)."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    events: list[Event] = []

    async def consume() -> None:
        async with aconnect_sse(client, "GET", f"/api/runs/{run_id}/events", headers=headers) as source:
            assert source.response.status_code == 200, await source.response.aread()
            assert source.response.headers["content-type"].startswith("text/event-stream")
            async for sse in source.aiter_sse():
                if not sse.event or (sse.event == "message" and not sse.data):
                    continue
                events.append(Event(int(sse.id), sse.event, sse.json()))
                if stop_after is not None and len(events) >= stop_after:
                    return
                if until is not None and sse.event == until:
                    return

    await asyncio.wait_for(consume(), timeout)
    return events


async def start_message(client: httpx.AsyncClient, conversation_id: str, content: str, **extra: Any) -> str:
    response = await client.post(
        f"/api/conversations/{conversation_id}/messages", json={"content": content, **extra}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


async def new_conversation(client: httpx.AsyncClient, **body: Any) -> str:
    response = await client.post("/api/conversations", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def ask(client: httpx.AsyncClient, conversation_id: str, content: str, **extra: Any) -> list[Event]:
    """Send a message and read its run's events to the end."""
    run_id = await start_message(client, conversation_id, content, **extra)
    return await read_events(client, run_id)


def answer_text(events: list[Event]) -> str:
    return "".join(e.data["text"] for e in events if e.type == "message.delta")
