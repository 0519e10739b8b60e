"""The OpenAI-compatible endpoint, driven by the official `openai` client and LangChain's ChatOpenAI."""

from __future__ import annotations

import httpx
import openai
import pytest
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
