"""The UI's API client: error mapping and event streams that resume after a dropped connection."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from ui.api_client import ApiError, ApiUnreachable, ChatstackClient, Unauthorized, export_href


def sse(seq: int, type_: str, **data: Any) -> bytes:
    return f"id: {seq}\r\nevent: {type_}\r\ndata: {json.dumps(data)}\r\n\r\n".encode()


class DroppingStream(httpx.AsyncByteStream):
    """Sends its chunks, then fails the way a cut connection does."""

    def __init__(self, chunks: list[bytes], drop: bool) -> None:
        self.chunks = chunks
        self.drop = drop

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.drop:
            raise httpx.ReadError("connection reset by peer")


def client(handler: Callable[[httpx.Request], httpx.Response]) -> ChatstackClient:
    return ChatstackClient("http://chatstack.test", transport=httpx.MockTransport(handler), max_reconnects=3)


def run_body(status: str) -> dict[str, Any]:
    return {"id": "r1", "conversation_id": "c1", "status": status, "backend": "b"}


async def test_stream_resumes_after_the_last_event_seen() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if len(requests) == 1:
            # Cut in the middle of event 3: it must not be delivered half, nor twice.
            chunks = [sse(1, "run.started"), sse(2, "message.delta", text="Hel"), sse(3, "x")[:9]]
            return httpx.Response(200, stream=DroppingStream(chunks, drop=True))
        chunks = [
            sse(3, "message.delta", text="lo"),
            b": ping\r\n\r\n",
            sse(4, "run.finished", status="completed"),
        ]
        return httpx.Response(200, stream=DroppingStream(chunks, drop=False))

    api = client(handler)
    events = [e async for e in api.events("r1")]
    assert [(e.id, e.type) for e in events] == [
        (1, "run.started"),
        (2, "message.delta"),
        (3, "message.delta"),
        (4, "run.finished"),
    ]
    assert events[2].data == {"text": "lo"}
    assert "last-event-id" not in requests[0].headers
    assert requests[1].headers["last-event-id"] == "2"
    assert requests[1].url.path == "/api/runs/r1/events"


async def test_stream_can_start_after_a_given_event() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=sse(8, "run.finished", status="completed"))

    assert [e.id async for e in client(handler).events("r1", after=7)] == [8]
    assert seen[0].headers["last-event-id"] == "7"


async def test_stream_that_ends_early_for_a_dead_run_stops() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, content=sse(1, "run.started"))
        return httpx.Response(200, json=run_body("interrupted"))

    assert [e.type async for e in client(handler).events("r1")] == ["run.started"]


async def test_stream_that_ends_early_for_a_live_run_reconnects() -> None:
    calls = {"events": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            calls["events"] += 1
            if calls["events"] == 1:
                return httpx.Response(200, content=sse(1, "run.started"))
            return httpx.Response(200, content=sse(2, "run.finished", status="completed"))
        return httpx.Response(200, json=run_body("running"))

    assert [e.id async for e in client(handler).events("r1")] == [1, 2]


async def test_stream_gives_up_when_the_api_stays_away() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    api = ChatstackClient("http://chatstack.test", transport=httpx.MockTransport(handler), max_reconnects=1)
    with pytest.raises(ApiUnreachable):
        _ = [e async for e in api.events("r1")]


async def test_unknown_run_is_an_error_not_a_retry() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no run r9", "type": "x"}})

    with pytest.raises(ApiError) as caught:
        _ = [e async for e in client(handler).events("r9")]
    assert caught.value.status == 404
    assert caught.value.code == "not_found"


async def test_error_bodies_become_api_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            body = {"error": {"code": "run_in_progress", "message": "an answer is running", "type": "x"}}
            return httpx.Response(409, json=body)
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    api = client(handler)
    with pytest.raises(ApiError) as conflict:
        await api.send_message("c1", "hi")
    assert (conflict.value.status, conflict.value.code) == (409, "run_in_progress")
    with pytest.raises(ApiError) as gateway:
        await api.conversations()
    assert (gateway.value.status, gateway.value.code) == (502, "http_error")


async def test_unreachable_api() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(ApiUnreachable):
        await client(handler).backends()


async def test_requests_are_shaped_like_the_api() -> None:
    seen: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, request.url.raw_path.decode(), body))
        now = "2026-01-01T00:00:00Z"
        conversation = {"id": "a/b", "title": "t", "backend": None, "created_at": now, "updated_at": now}
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.url.path.endswith(("/messages", "/regenerate")):
            return httpx.Response(
                202,
                json={
                    "run_id": "r",
                    "conversation_id": "a/b",
                    "user_message_id": 1,
                    "backend": "x",
                    "events_url": "u",
                },
            )
        return httpx.Response(200, json=conversation)

    api = client(handler)
    await api.update_conversation("a/b", title="New name")
    await api.send_message("a/b", "hello", backend="fast")
    await api.delete_conversation("a/b")
    await api.regenerate("a/b")
    await api.regenerate("a/b", backend="auto")
    assert seen == [
        ("PATCH", "/api/conversations/a%2Fb", {"title": "New name"}),
        ("POST", "/api/conversations/a%2Fb/messages", {"content": "hello", "backend": "fast"}),
        ("DELETE", "/api/conversations/a%2Fb", None),
        ("POST", "/api/conversations/a%2Fb/regenerate", {}),
        ("POST", "/api/conversations/a%2Fb/regenerate", {"backend": "auto"}),
    ]
    await api.aclose()


def test_export_links_are_relative_to_the_page() -> None:
    assert export_href("abc", "markdown") == "api/conversations/abc/export?format=markdown"


async def test_each_session_sends_its_own_key_over_one_pool() -> None:
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("authorization")))
        if request.url.path.endswith("/events"):
            return httpx.Response(200, content=sse(1, "run.finished", status="completed"))
        return httpx.Response(200, json={"items": [], "total": 0})

    root = client(handler)
    alice, bob = root.with_key("cs_alice"), root.with_key("cs_bob")
    await alice.conversations()
    await bob.conversations()
    await root.conversations()
    _ = [e async for e in alice.events("r1")]
    assert seen == [
        ("/api/conversations", "Bearer cs_alice"),
        ("/api/conversations", "Bearer cs_bob"),
        ("/api/conversations", None),
        ("/api/runs/r1/events", "Bearer cs_alice"),
    ]
    # One connection pool for every user; closing the root closes it for all of them.
    assert alice._client() is bob._client() is root._client()
    await root.aclose()


async def test_no_cookie_is_carried_from_one_user_to_another() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(
            200, json={"items": [], "total": 0}, headers={"Set-Cookie": "session=alice; Path=/"}
        )

    root = client(handler)
    await root.with_key("cs_alice").conversations()
    await root.with_key("cs_bob").conversations()
    assert seen == [None, None]


async def test_a_refused_key_is_unauthorized_not_an_api_error() -> None:
    body = {"error": {"code": "unauthorized", "message": "this API key is not valid", "type": "x"}}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json=body, headers={"WWW-Authenticate": "Bearer"})

    api = client(handler).with_key("cs_revoked")
    with pytest.raises(Unauthorized) as refused:
        await api.conversations()
    assert refused.value.message == "this API key is not valid"
    assert not isinstance(refused.value, ApiError)
    # A live stream whose key stops working ends the same way, without retrying.
    with pytest.raises(Unauthorized):
        _ = [e async for e in api.events("r1")]
