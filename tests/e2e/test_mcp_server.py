"""`/mcp`: chatstack as an MCP server, driven over HTTP by the MCP SDK's own streamable HTTP client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.support.processes import ServerProcess, start_chatstack, users_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mcp_env(chatstack_env: dict[str, str]) -> dict[str, str]:
    return {**chatstack_env, "CHATSTACK_AUTH": "on", "CHATSTACK_RATE_LIMIT_PER_MINUTE": "6000"}


@pytest.fixture(scope="module")
def keys(mcp_env: dict[str, str]) -> dict[str, str]:
    found = {}
    for who in ("ann", "ben"):
        # Unique names: the PostgreSQL database is shared by the whole test session.
        result = users_cli(mcp_env, "create", f"mcp-{who}-{uuid.uuid4().hex[:8]}")
        assert result.returncode == 0, result.stderr
        found[who] = result.stdout.strip().splitlines()[-1]
    return found


@pytest.fixture(scope="module")
def server(mcp_env: dict[str, str], keys: dict[str, str], log_dir: Path) -> Iterator[ServerProcess]:
    process = start_chatstack(mcp_env, log_dir)
    yield process
    process.stop()


@asynccontextmanager
async def connect(server: ServerProcess, key: str | None, **options: Any) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as http,
        Client(streamable_http_client(f"{server.url}/mcp", http_client=http), **options) as client,
    ):
        yield client


def text_of(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_ask_then_read_the_conversation(server: ServerProcess, keys: dict[str, str], mode: str) -> None:
    async with connect(server, keys["ann"], mode=mode) as client:
        tools = (await client.list_tools()).tools
        assert [t.name for t in tools] == ["ask"]
        assert set(tools[0].input_schema["properties"]) == {"question", "conversation_id", "backend"}

        result = await client.call_tool("ask", {"question": "search: mcp servers"})
        assert not result.is_error, text_of(result)
        answer = result.structured_content
        assert answer is not None
        assert answer["status"] == "completed"
        assert answer["backend"] == "scripted"
        assert "https://example.org/mcp-servers" in answer["answer"]
        assert answer["sources"][0]["url"] == "https://example.org/mcp-servers"
        assert "Sources:" in text_of(result)
        cid = answer["conversation_id"]

        follow_up = await client.call_tool("ask", {"question": "calc: 6*7", "conversation_id": cid})
        assert not follow_up.is_error, text_of(follow_up)
        assert follow_up.structured_content is not None
        assert follow_up.structured_content["conversation_id"] == cid
        assert "42" in follow_up.structured_content["answer"]

        listed = (await client.list_resources()).resources
        mine = [r for r in listed if str(r.uri) == f"chatstack://conversations/{cid}"]
        assert len(mine) == 1
        assert mine[0].title == "search: mcp servers"
        assert mine[0].mime_type == "text/markdown"
        templates = (await client.list_resource_templates()).resource_templates
        assert templates[0].uri_template == "chatstack://conversations/{id}"

        read = await client.read_resource(f"chatstack://conversations/{cid}")
        content = read.contents[0]
        assert isinstance(content, types.TextResourceContents)
        assert content.text.startswith("# search: mcp servers")
        assert "## User\n\ncalc: 6*7" in content.text
        assert "**calculator result**" in content.text


async def test_requests_without_a_valid_key_are_refused(server: ServerProcess) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for headers in ({}, {"Authorization": "Bearer cs_not-a-key"}):
            response = await http.post("/mcp", json=initialize, headers={**accept, **headers})
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
    # The SDK's client gets no further than its first request (its error comes wrapped in task groups).
    with pytest.raises(BaseExceptionGroup) as refused:
        async with connect(server, None) as client:
            await client.list_tools()
    assert refused.group_contains(MCPError, match="error response", depth=None)


async def test_one_user_cannot_reach_anothers_conversation(
    server: ServerProcess, keys: dict[str, str]
) -> None:
    async with connect(server, keys["ann"]) as ann:
        result = await ann.call_tool("ask", {"question": "calc: 2+2"})
        assert not result.is_error, text_of(result)
        assert result.structured_content is not None
        cid = result.structured_content["conversation_id"]
    uri = f"chatstack://conversations/{cid}"
    async with connect(server, keys["ben"]) as ben:
        with pytest.raises(MCPError) as refused:
            await ben.read_resource(uri)
        assert refused.value.error.code == types.INVALID_PARAMS
        assert "not found" in refused.value.error.message
        assert uri not in [str(r.uri) for r in (await ben.list_resources()).resources]
        hijack = await ben.call_tool("ask", {"question": "calc: 1+1", "conversation_id": cid})
        assert hijack.is_error
        assert "not found" in text_of(hijack)
    async with connect(server, keys["ann"]) as ann:
        content = (await ann.read_resource(uri)).contents[0]
        assert isinstance(content, types.TextResourceContents)
        assert "calc: 1+1" not in content.text


async def test_failures_are_tool_errors(server: ServerProcess, keys: dict[str, str]) -> None:
    async with connect(server, keys["ann"]) as client:
        unknown = await client.call_tool("ask", {"question": "hi", "conversation_id": "nope"})
        assert unknown.is_error
        assert text_of(unknown) == "conversation nope not found"

        down = await client.call_tool("ask", {"question": "hi", "backend": "offline"})
        assert down.is_error
        assert "offline" in text_of(down)
        assert "conversation " in text_of(down)

        no_such_backend = await client.call_tool("ask", {"question": "hi", "backend": "nonexistent"})
        assert no_such_backend.is_error
        assert "unknown backend 'nonexistent'" in text_of(no_such_backend)

        empty = await client.call_tool("ask", {"question": ""})
        assert empty.is_error

        with pytest.raises(MCPError):
            await client.read_resource("chatstack://elsewhere/x")


@pytest.fixture(scope="module")
def asking_server(
    chatstack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, log_dir: Path
) -> Iterator[ServerProcess]:
    """chatstack with a calculator that must ask before it runs, and a short wait for the answer."""
    tools_file = tmp_path_factory.mktemp("tools") / "tools.yaml"
    tools_file.write_text(
        "builtin:\n"
        "  calculator: {enabled: true, approval: ask}\n"
        "  web_search: {enabled: true, approval: auto}\n"
        "mcp_servers: []\n"
    )
    env = {**chatstack_env, "CHATSTACK_TOOLS_FILE": str(tools_file), "CHATSTACK_APPROVAL_TIMEOUT_S": "3"}
    process = start_chatstack(env, log_dir)
    yield process
    process.stop()


async def test_answers_through_mcp_are_offered_no_tool_that_asks(asking_server: ServerProcess) -> None:
    async with connect(asking_server, None) as client:
        result = await client.call_tool("ask", {"question": "calc: 6*7"})
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    run_id = result.structured_content["run_id"]
    async with httpx.AsyncClient(base_url=asking_server.url, timeout=30) as http:
        events = (await http.get(f"/api/runs/{run_id}/events")).text
        # The model still asked for the calculator: it was not among the run's tools, so nobody was asked.
        assert "event: tool.approval_required" not in events
        assert "event: tool.finished" in events
        assert "42" not in result.structured_content["answer"]
        # The same question through the API does wait for the user (what /mcp must not offer).
        cid = (await http.post("/api/conversations", json={})).json()["id"]
        started = await http.post(f"/api/conversations/{cid}/messages", json={"content": "calc: 6*7"})
        async with http.stream("GET", f"/api/runs/{started.json()['run_id']}/events") as stream:
            async for line in stream.aiter_lines():
                if line == "event: tool.approval_required":
                    break
            else:
                pytest.fail("the API's run never asked for approval")
