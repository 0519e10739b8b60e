"""Conversations over HTTP against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.support.sse import ask, new_conversation

pytestmark = pytest.mark.slow


async def test_backends_are_listed_with_health(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/backends")).json()
    by_name = {b["name"]: b for b in body["items"]}
    assert body["default"] == "scripted"
    assert by_name["scripted"]["supports_tools"] is True
    assert by_name["scripted-plain"]["supports_tools"] is False
    assert by_name["scripted-prompted"]["tool_mode"] == "prompted"
    # The health poller runs every second in tests; a down backend is reported, not hidden.
    for _ in range(50):
        body = (await client.get("/api/backends")).json()
        by_name = {b["name"]: b for b in body["items"]}
        if by_name["offline"]["health"] != "unknown" and by_name["scripted"]["health"] != "unknown":
            break
        await __import__("asyncio").sleep(0.1)
    assert by_name["scripted"]["health"] == "up"
    assert by_name["offline"]["health"] == "down"
    assert by_name["offline"]["health_error"]


async def test_conversation_crud(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/conversations", json={"title": "Trip plans"})
    assert created.status_code == 201
    cid = created.json()["id"]
    assert created.json()["title"] == "Trip plans"

    listed = (await client.get("/api/conversations")).json()
    assert cid in [c["id"] for c in listed["items"]]
    assert listed["total"] >= 1

    patched = await client.patch(
        f"/api/conversations/{cid}", json={"title": "Renamed", "backend": "scripted-plain"}
    )
    assert patched.status_code == 200
    detail = (await client.get(f"/api/conversations/{cid}")).json()
    assert detail["title"] == "Renamed"
    assert detail["backend"] == "scripted-plain"
    assert detail["messages"] == []
    assert detail["active_run_id"] is None

    assert (await client.delete(f"/api/conversations/{cid}")).status_code == 204
    gone = await client.get(f"/api/conversations/{cid}")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"
    assert (await client.delete(f"/api/conversations/{cid}")).status_code == 404


async def test_title_comes_from_first_message(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    await ask(
        client, cid, "What is the boiling point of water at the top of Mount Everest in Celsius degrees?"
    )
    title = (await client.get(f"/api/conversations/{cid}")).json()["title"]
    assert title.startswith("What is the boiling point of water")
    assert len(title) <= 61
    await ask(client, cid, "second message")
    assert (await client.get(f"/api/conversations/{cid}")).json()["title"] == title


async def test_newest_conversation_listed_first(client: httpx.AsyncClient) -> None:
    first = await new_conversation(client, title="older")
    second = await new_conversation(client, title="newer")
    await ask(client, first, "bump")  # a new message makes it the most recent
    items = (await client.get("/api/conversations", params={"limit": 2})).json()["items"]
    assert [c["id"] for c in items] == [first, second]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/conversations", {"title": ""}),
        ("post", "/api/conversations", {"title": 5}),
        ("post", "/api/conversations", {"unknown": 1}),
        ("post", "/api/conversations", {"backend": "no-such-backend"}),
        ("post", "/api/conversations", {"title": "bell\x07"}),
        ("post", "/api/conversations/{cid}/messages", {}),
        ("post", "/api/conversations/{cid}/messages", {"content": "   "}),
        ("post", "/api/conversations/{cid}/messages", {"content": "hi", "backend": "nope"}),
        ("post", "/api/conversations/{cid}/messages", {"content": ["a"]}),
        ("patch", "/api/conversations/{cid}", {"title": "x" * 201}),
    ],
)
async def test_invalid_bodies_get_422_with_json_error(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, object]
) -> None:
    cid = await new_conversation(client)
    response = await client.request(method, path.format(cid=cid), json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] in {"invalid_request", "unknown_backend"}
    assert error["message"]
    # Nothing was stored by the failed request.
    assert (await client.get(f"/api/conversations/{cid}")).json()["messages"] == []


async def test_malformed_json_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/conversations", content=b'{"title": "x"', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


async def test_unknown_ids_are_404(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("get", "/api/conversations/nope"),
        ("patch", "/api/conversations/nope"),
        ("get", "/api/conversations/nope/export"),
        ("get", "/api/runs/nope"),
        ("get", "/api/runs/nope/events"),
        ("post", "/api/runs/nope/cancel"),
    ]:
        response = await client.request(method, path, json={} if method == "patch" else None)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    response = await client.post("/api/conversations/nope/messages", json={"content": "hi"})
    assert response.status_code == 404


async def test_export_json_and_markdown(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client, title="Export me")
    await ask(client, cid, "calc: 6*7")
    as_json = await client.get(f"/api/conversations/{cid}/export", params={"format": "json"})
    assert as_json.status_code == 200
    assert "attachment" in as_json.headers["content-disposition"]
    document = as_json.json()
    assert document["conversation"]["title"] == "Export me"
    roles = [m["role"] for m in document["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert document["messages"][2]["content"] == "42"

    as_md = await client.get(f"/api/conversations/{cid}/export", params={"format": "markdown"})
    assert as_md.status_code == 200
    assert as_md.headers["content-type"].startswith("text/markdown")
    text = as_md.text
    assert text.startswith("# Export me")
    assert "## User" in text
    assert "calc: 6*7" in text
    assert "`calculator`" in text
    assert "The result is 42." in text

    bad = await client.get(f"/api/conversations/{cid}/export", params={"format": "pdf"})
    assert bad.status_code == 422


async def test_unknown_api_paths_are_json_404s_not_the_ui(client: httpx.AsyncClient) -> None:
    for path in ("/api/nope", "/api/conversations/x/y/z", "/v1/embeddings"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert (await client.post("/v1/completions", json={})).status_code == 404


async def test_regenerate_replaces_the_last_answer(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    nothing = await client.post(f"/api/conversations/{cid}/regenerate", json={})
    assert nothing.status_code == 409
    assert nothing.json()["error"]["code"] == "nothing_to_regenerate"
    await ask(client, cid, "first")
    await ask(client, cid, "calc: 2*21")
    response = await client.post(f"/api/conversations/{cid}/regenerate", json={"backend": "scripted-plain"})
    assert response.status_code == 202
    from tests.support.sse import read_events

    events = await read_events(client, response.json()["run_id"])
    assert events[-1].data["status"] == "completed"
    detail = (await client.get(f"/api/conversations/{cid}")).json()
    # The question stays once; its old answer and tool steps are replaced by the new answer.
    assert [(m["role"], m["content"]) for m in detail["messages"]] == [
        ("user", "first"),
        ("assistant", "Echo: first"),
        ("user", "calc: 2*21"),
        ("assistant", "Echo: calc: 2*21"),
    ]
    assert detail["messages"][3]["backend"] == "scripted-plain"
    assert [r["status"] for r in detail["runs"]] == ["completed", "completed", "completed"]
    assert detail["runs"][-1]["ttft_ms"] > 0


async def test_tool_messages_keep_their_duration(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    await ask(client, cid, "calc: 1+1")
    tool = next(
        m for m in (await client.get(f"/api/conversations/{cid}")).json()["messages"] if m["role"] == "tool"
    )
    assert tool["duration_ms"] is not None
    assert tool["duration_ms"] >= 0


async def test_a_finished_run_is_never_shown_without_its_answer(client: httpx.AsyncClient) -> None:
    """Snapshots taken while answers finish are consistent: once the newest listed run is no longer
    active, its answer is in the messages (the UI stops following a run on that signal)."""
    cid = await new_conversation(client)
    await ask(client, cid, "tokens: 3")
    inconsistent: list[dict[str, Any]] = []
    for _ in range(8):
        started = await client.post(f"/api/conversations/{cid}/regenerate", json={})
        assert started.status_code == 202, started.text
        pollers = (_poll_until_finished(client, cid, started.json()["run_id"]) for _ in range(4))
        inconsistent += await asyncio.wait_for(asyncio.gather(*pollers), timeout=30)
    assert not any(inconsistent), next(d for d in inconsistent if d)


async def _poll_until_finished(client: httpx.AsyncClient, cid: str, run_id: str) -> dict[str, Any]:
    """The first snapshot that shows `run_id` finished: empty when its answer is there, else the snapshot."""
    while True:
        detail: dict[str, Any] = (await client.get(f"/api/conversations/{cid}")).json()
        if detail["active_run_id"] is None and detail["runs"][-1]["id"] == run_id:
            last = detail["messages"][-1]
            return {} if (last["role"], last["run_id"]) == ("assistant", run_id) else detail
