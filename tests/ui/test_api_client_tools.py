"""The API client's calls for tools and approvals, and a run paused for an approval (ui/api_client.py)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.ui.test_api_client import client, run_body, sse
from ui.api_client import ApiError

NOW = "2026-01-01T00:00:00Z"


async def test_a_stream_that_ends_while_the_run_waits_for_approval_reconnects() -> None:
    """A run paused for an approval is not over: the page keeps following it."""
    calls = {"events": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            calls["events"] += 1
            if calls["events"] == 1:
                return httpx.Response(200, content=sse(1, "tool.approval_required", call_id="c"))
            assert request.headers["last-event-id"] == "1"
            return httpx.Response(200, content=sse(2, "run.finished", status="completed"))
        return httpx.Response(200, json=run_body("awaiting_approval"))

    assert [e.type async for e in client(handler).events("r1")] == ["tool.approval_required", "run.finished"]


async def test_tools_and_approval_requests_are_shaped_like_the_api() -> None:
    seen: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content) if request.content else None
        seen.append((request.method, request.url.raw_path.decode(), sent))
        body: dict[str, Any] = sent or {}
        if request.url.path == "/api/tools":
            tool = {"name": "t", "server": "time", "description": "d", "parameters": {}, "approval": "ask"}
            return httpx.Response(200, json={"items": [{**tool, "status": "available", "reason": None}]})
        if request.url.path.endswith("/approvals"):
            if body["call_id"] == "gone":
                return httpx.Response(
                    409, json={"error": {"code": "approval_not_pending", "message": "not waiting"}}
                )
            return httpx.Response(
                200, json={"run_id": "r/1", "call_id": body["call_id"], "approved": True, "status": "running"}
            )
        conversation = {
            "id": "a/b",
            "title": "t",
            "created_at": NOW,
            "updated_at": NOW,
            "tools": body.get("tools"),
        }
        return httpx.Response(201 if request.method == "POST" else 200, json=conversation)

    api = client(handler)
    tools = (await api.tools()).items
    assert [(t.name, t.server, t.approval, t.status) for t in tools] == [("t", "time", "ask", "available")]
    assert (await api.create_conversation("fast", ["t"])).tools == ["t"]
    await api.create_conversation()
    assert (await api.set_tools("a/b", [])).tools == []
    assert (await api.set_tools("a/b", None)).tools is None
    decided = await api.decide_approval("r/1", "call_1", approve=True)
    assert (decided.approved, decided.status) == (True, "running")
    await api.decide_approval("r/1", "call_2", approve=False, reason="no")
    with pytest.raises(ApiError) as caught:
        await api.decide_approval("r/1", "gone", approve=True)
    assert (caught.value.status, caught.value.code) == (409, "approval_not_pending")
    assert seen[1:] == [
        ("POST", "/api/conversations", {"backend": "fast", "tools": ["t"]}),
        ("POST", "/api/conversations", {}),
        ("PATCH", "/api/conversations/a%2Fb", {"tools": []}),
        ("PATCH", "/api/conversations/a%2Fb", {"tools": None}),
        ("POST", "/api/runs/r%2F1/approvals", {"call_id": "call_1", "approve": True}),
        ("POST", "/api/runs/r%2F1/approvals", {"call_id": "call_2", "approve": False, "reason": "no"}),
        ("POST", "/api/runs/r%2F1/approvals", {"call_id": "gone", "approve": True}),
    ]
    await api.aclose()
