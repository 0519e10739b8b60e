"""The OpenAI-compatible endpoint, driven by the official `openai` client and LangChain's ChatOpenAI."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from tests.support.processes import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def oai(chatstack: ServerProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{chatstack.url}/v1", api_key="unused", max_retries=0)


async def test_models_lists_backends_and_agent(oai: openai.AsyncOpenAI) -> None:
    ids = [m.id async for m in oai.models.list()]
    assert {"agent", "agent/scripted", "scripted", "scripted-prompted", "offline"} <= set(ids)


async def test_proxy_non_streaming(oai: openai.AsyncOpenAI) -> None:
    response = await oai.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "tokens: 5"}]
    )
    assert response.choices[0].message.content == "the quick brown fox jumps"
    assert response.usage is not None
    assert response.usage.completion_tokens == 5


async def test_proxy_streaming_with_usage(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="scripted",
        messages=[{"role": "user", "content": "tokens: 12"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, chunks = "", None, 0
    async for chunk in stream:
        chunks += 1
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    assert len(text.split()) == 12
    assert chunks >= 12
    assert usage is not None
    assert usage.completion_tokens == 12


async def test_proxy_passes_tool_calls_through(oai: openai.AsyncOpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "calculator",
                "description": "math",
                "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
            },
        }
    ]
    stream = await oai.chat.completions.create(
        model="scripted",
        messages=[{"role": "user", "content": "calc: 2+2"}],
        tools=tools,
        stream=True,  # type: ignore[arg-type]
    )
    name, arguments = "", ""
    async for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name += call.function.name or "" if call.function else ""
            arguments += call.function.arguments or "" if call.function else ""
    assert name == "calculator"
    assert arguments == '{"expression": "2+2"}'


async def test_agent_model_streams_final_answer(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="agent/scripted",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "calc: 12*12"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish = "", None, None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text == "The result is 144."
    assert finish == "stop"
    assert usage is not None
    assert usage.completion_tokens > 0


async def test_agent_model_non_streaming(oai: openai.AsyncOpenAI) -> None:
    response = await oai.chat.completions.create(
        model="agent", messages=[{"role": "user", "content": "calc: 2**8"}]
    )
    assert response.choices[0].message.content == "The result is 256."
    assert response.usage is not None
    assert response.usage.prompt_tokens > 0


async def test_errors_are_proper_status_codes(oai: openai.AsyncOpenAI, chatstack: ServerProcess) -> None:
    with pytest.raises(openai.NotFoundError):
        await oai.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.InternalServerError) as down:
        await oai.chat.completions.create(model="offline", messages=[{"role": "user", "content": "x"}])
    assert down.value.status_code == 502
    with pytest.raises(openai.InternalServerError):
        await oai.chat.completions.create(
            model="agent/offline", messages=[{"role": "user", "content": "x"}], stream=True
        )
    with pytest.raises(openai.InternalServerError) as failing:
        await oai.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "fail: before"}]
        )
    assert failing.value.status_code == 502
    async with httpx.AsyncClient(base_url=chatstack.url) as http:
        bad = await http.post("/v1/chat/completions", json={"model": "scripted", "messages": []})
        assert bad.status_code == 422
        assert bad.json()["error"]["message"]
        bad_role = await http.post(
            "/v1/chat/completions", json={"model": "scripted", "messages": [{"role": "x"}]}
        )
        assert bad_role.status_code == 422


async def test_mid_stream_failure_is_reported_in_band(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "tokens: 20\nfail: midstream"}], stream=True
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


async def test_langchain_chat_openai(chatstack: ServerProcess) -> None:
    llm = ChatOpenAI(base_url=f"{chatstack.url}/v1", api_key="unused", model="scripted", max_retries=0)  # type: ignore[arg-type]
    reply = await llm.ainvoke([HumanMessage("tokens: 3")])
    assert reply.content == "the quick brown"
    pieces = [chunk.content async for chunk in llm.astream("tokens: 4")]
    assert "".join(str(p) for p in pieces) == "the quick brown fox"

    @tool
    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression."""
        return expression

    with_tools = llm.bind_tools([calculator])
    message = await with_tools.ainvoke("calc: 7*6")
    assert message.tool_calls[0]["name"] == "calculator"  # type: ignore[attr-defined]
    assert message.tool_calls[0]["args"] == {"expression": "7*6"}  # type: ignore[attr-defined]

    agent = ChatOpenAI(base_url=f"{chatstack.url}/v1", api_key="unused", model="agent", max_retries=0)  # type: ignore[arg-type]
    answer = await agent.ainvoke("calc: 5*5")
    assert answer.content == "The result is 25."


# Python class names, aiohttp's own text, reprs: none of it is for the client (it goes to the server log).
INTERNALS = re.compile(r"[A-Z][a-z]+(Error|Exception)\b|aiohttp|<|\[|payload")


def backend_url(chatstack_env: dict[str, str], name: str) -> str:
    backends = yaml.safe_load(Path(chatstack_env["CHATSTACK_BACKENDS_FILE"]).read_text())["backends"]
    url: str = next(b["base_url"] for b in backends if b["name"] == name)
    return url


@asynccontextmanager
async def answering_every_request(url: str, answer: bytes) -> AsyncIterator[None]:
    """A backend at `url` that reads each whole request, writes `answer` and closes the connection."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        await reader.readexactly(int(length.group(1)) if length else 0)  # no unread data: a FIN, no RST
        writer.write(answer)
        await writer.drain()
        writer.close()

    port = int(url.rsplit(":", 1)[1].split("/")[0])
    server = await asyncio.start_server(reply, "127.0.0.1", port)
    async with server:
        yield


async def sse_data(http: httpx.AsyncClient, body: dict[str, object]) -> tuple[str, list[dict[str, Any]]]:
    """(the request id, the data of each event but `[DONE]`) of a streamed chat completion."""
    async with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        lines = [line async for line in response.aiter_lines()]
    data = [json.loads(line[6:]) for line in lines if line.startswith("data: ") and line != "data: [DONE]"]
    return response.headers["x-request-id"], data


async def test_a_backend_failing_mid_stream_is_reported_in_plain_words(chatstack: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=chatstack.url, timeout=30) as http:
        prompt = {"role": "user", "content": "tokens: 20\nfail: midstream"}
        _, events = await sse_data(http, {"model": "scripted", "messages": [prompt]})
    error = events[-1]["error"]
    assert error["code"] == "backend_unavailable"
    assert error["message"] == "backend 'scripted': the connection broke off in the middle of the answer"
    assert [e["choices"][0]["delta"].get("content") for e in events[1:4]] == ["the", " quick", " brown"]


async def test_an_unreachable_backend_is_named_in_plain_words(
    chatstack: ServerProcess, chatstack_env: dict[str, str]
) -> None:
    url = backend_url(chatstack_env, "offline")
    expected = f"backend 'offline': cannot reach {url} (the connection was refused)"
    async with httpx.AsyncClient(base_url=chatstack.url, timeout=30) as http:
        for model in ("offline", "agent/offline"):
            body = {"model": model, "messages": [{"role": "user", "content": "x"}], "stream": True}
            response = await http.post("/v1/chat/completions", json=body)
            assert response.status_code == 502
            error = response.json()["error"]
            assert (error["code"], error["message"], error["backend"]) == (
                "backend_unavailable",
                expected,
                "offline",
            )


async def test_an_answer_cut_short_is_reported_in_plain_words(
    chatstack: ServerProcess, chatstack_env: dict[str, str]
) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 900\r\n\r\n"
    half = head + b'{"id": "chatcmpl-1",'
    async with (
        answering_every_request(backend_url(chatstack_env, "mortal"), half),
        httpx.AsyncClient(base_url=chatstack.url, timeout=30) as http,
    ):
        response = await http.post(
            "/v1/chat/completions", json={"model": "mortal", "messages": [{"role": "user", "content": "x"}]}
        )
    assert response.status_code == 502
    assert response.json()["error"] == {
        "code": "backend_bad_response",
        "message": "backend 'mortal': its answer broke off before it was complete",
        "type": "server_error",
        "backend": "mortal",
    }


async def test_an_agent_failing_mid_answer_names_no_internals(
    chatstack: ServerProcess, chatstack_env: dict[str, str]
) -> None:
    # A tool call whose index is not a number, after the answer has begun: the backend's fault, said so
    # in words (it used to surface as the agent's own ValueError).
    events = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": "first", "function": {"name": "x"}}]}}]},
    ]
    stream = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
    async with (
        answering_every_request(backend_url(chatstack_env, "mortal"), head + stream),
        httpx.AsyncClient(base_url=chatstack.url, timeout=30) as http,
    ):
        _, data = await sse_data(
            http, {"model": "agent/mortal", "messages": [{"role": "user", "content": "hi"}]}
        )
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in data[:-1]) == "Hello"
    error = data[-1]["error"]
    assert error["code"] == "backend_bad_response"
    assert "not a chat completion chunk" in error["message"]
    assert not INTERNALS.search(error["message"])
