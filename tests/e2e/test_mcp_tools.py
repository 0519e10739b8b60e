"""MCP tools end to end over HTTP: a real chatstack with a tools file naming real MCP servers
(mcp-server-time and tests/mcp/failing_server.py), the scripted backend calling their tools."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.mcp.servers import failing_server, time_server
from tests.support.processes import ServerProcess, start_chatstack
from tests.support.sse import answer_text, ask, new_conversation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def down_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp") / "down"


@pytest.fixture(scope="module")
def mcp_chatstack(
    chatstack_env: dict[str, str], log_dir: Path, down_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    tools_file = tmp_path_factory.mktemp("tools") / "tools.yaml"
    tools_file.write_text(
        yaml.safe_dump(
            {
                "builtin": {"web_search": {"approval": "deny"}},
                "mcp_servers": [
                    time_server(tools={"convert_time": {"approval": "ask"}}),
                    failing_server(down_file),
                ],
            }
        )
    )
    env = {**chatstack_env, "CHATSTACK_TOOLS_FILE": str(tools_file), "FAILING_MCP_DOWN_FILE": str(down_file)}
    server = start_chatstack(env, log_dir)
    yield server
    server.stop()


@pytest.fixture
async def client(mcp_chatstack: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mcp_chatstack.url, timeout=30) as http:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the MCP servers connect after the start, in the background
            tools = await list_tools(http)
            if {"get_current_time", "slow"} <= set(tools) and all(
                t["status"] == "available" for t in tools.values()
            ):
                break
            await asyncio.sleep(0.1)
        yield http


async def list_tools(http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await http.get("/api/tools")
    assert response.status_code == 200, response.text
    return {t["name"]: t for t in response.json()["items"]}


async def test_tools_list(client: httpx.AsyncClient) -> None:
    tools = await list_tools(client)
    assert tools["calculator"]["server"] == "builtin"
    assert tools["calculator"]["approval"] == "auto"
    assert tools["web_search"]["approval"] == "deny"
    time_tool = tools["get_current_time"]
    assert time_tool["server"] == "time"
    assert time_tool["status"] == "available"
    assert time_tool["reason"] is None
    assert time_tool["parameters"]["type"] == "object"
    assert time_tool["description"]
    assert tools["convert_time"]["approval"] == "ask"
    assert tools["slow"]["server"] == "failing"


async def test_conversation_tools_field(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/conversations", json={"tools": ["calculator", "get_current_time"]})
    assert created.status_code == 201
    assert created.json()["tools"] == ["calculator", "get_current_time"]
    cid = created.json()["id"]
    assert (await client.get(f"/api/conversations/{cid}")).json()["tools"] == [
        "calculator",
        "get_current_time",
    ]
    patched = await client.patch(f"/api/conversations/{cid}", json={"tools": ["echo"]})
    assert patched.status_code == 200
    assert patched.json()["tools"] == ["echo"]
    renamed = await client.patch(f"/api/conversations/{cid}", json={"title": "kept"})
    assert renamed.json()["tools"] == ["echo"]  # absent: unchanged
    reset = await client.patch(f"/api/conversations/{cid}", json={"tools": None})
    assert reset.status_code == 200
    assert reset.json()["tools"] is None
    for bad in ({"tools": ["no_such_tool"]}, {"tools": "calculator"}, {"tools": ["x" * 65]}):
        response = await client.post("/api/conversations", json=bad)
        assert response.status_code == 422, response.text
        assert "error" in response.json()
    unknown = await client.patch(f"/api/conversations/{cid}", json={"tools": ["calculator", "nope"]})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_tool"


async def test_model_calls_an_mcp_tool(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client, tools=["get_current_time"])
    events = await ask(client, cid, 'tool: get_current_time {"timezone": "UTC"}')
    started = next(e for e in events if e.type == "tool.started")
    finished = next(e for e in events if e.type == "tool.finished")
    assert started.data["name"] == "get_current_time"
    assert started.data["server"] == "time"
    assert finished.data["server"] == "time"
    assert finished.data["error"] is None
    assert '"timezone": "UTC"' in finished.data["output"]
    assert "<tool_output" in finished.data["output"]
    assert events[-1].type == "run.finished"
    assert events[-1].data["status"] == "completed"
    assert answer_text(events).startswith("The result is")
    stored = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
    assert any(m["role"] == "tool" and m["name"] == "get_current_time" for m in stored)


async def test_a_tool_not_selected_is_not_offered(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client, tools=["calculator"])
    events = await ask(client, cid, 'tool: get_current_time {"timezone": "UTC"}')
    finished = next(e for e in events if e.type == "tool.finished")
    assert finished.data["error"]
    assert "unknown tool" in finished.data["error"]
    # Denied tools are not offered either, even with every tool selected (null).
    cid = await new_conversation(client)
    events = await ask(client, cid, "search: anything")
    finished = next(e for e in events if e.type == "tool.finished")
    assert "unknown tool" in (finished.data["error"] or "")


async def test_crashed_server_shows_unavailable_then_recovers(
    client: httpx.AsyncClient, down_file: Path
) -> None:
    cid = await new_conversation(client, tools=["crash", "calculator"])
    events = await ask(client, cid, 'tool: crash {"stay_down": true}')
    finished = next(e for e in events if e.type == "tool.finished")
    assert finished.data["server"] == "failing"
    assert "stopped during the call" in finished.data["error"]
    assert events[-1].data["status"] == "completed"  # the agent answered without it
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        slow = (await list_tools(client))["slow"]
        if slow["status"] == "unavailable" and "retrying" in (slow["reason"] or ""):
            break
        await asyncio.sleep(0.1)
    assert slow["status"] == "unavailable", slow
    assert slow["reason"]
    # The agent keeps working meanwhile, with the other tools.
    events = await ask(client, cid, "calc: 6*7")
    assert answer_text(events) == "The result is 42."
    down_file.unlink()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (await list_tools(client))["slow"]["status"] == "available":
            break
        await asyncio.sleep(0.2)
    assert (await list_tools(client))["slow"]["status"] == "available"


async def test_openai_endpoint_leaves_out_tools_that_ask(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "agent", "messages": [{"role": "user", "content": 'tool: convert_time {"x": 1}'}]},
    )
    assert response.status_code == 200, response.text
    # convert_time needs approval: not offered here, so the call is refused as an unknown tool.
    assert "problem" in response.json()["choices"][0]["message"]["content"]
