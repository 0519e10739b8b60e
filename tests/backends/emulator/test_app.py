"""The HTTP surface in-process: routes, errors, usage, tool calls and metric names (content, not timing)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from backends.emulator.app import create_app
from backends.emulator.stream_response import ScriptedMidstreamFailure
from backends.scripted.script import prompted_call_text
from tests.backends.emulator.test_reply import PROMPTED_SYSTEM, TOOLS

MODEL = "qwen2.5-7b-instruct"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app("qwen-a10g", seed=3, time_scale=0.001)
    runner = app.state.runner
    await runner.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emu") as http:
            yield http
    finally:
        await runner.stop()


def events(body: str) -> list[dict[str, Any]]:
    lines = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


async def complete(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v1/chat/completions", json={"model": MODEL, **body})


async def test_models_and_health(client: httpx.AsyncClient) -> None:
    models = (await client.get("/v1/models")).json()
    assert [m["id"] for m in models["data"]] == [MODEL]
    health = await client.get("/health")
    assert health.status_code == 200
    assert health.json()["profile"] == "qwen-a10g"


async def test_streaming_reports_usage_in_a_final_chunk(client: httpx.AsyncClient) -> None:
    response = await complete(
        client,
        messages=[{"role": "user", "content": "hello " * 40}],
        stream=True,
        max_tokens=12,
        stream_options={"include_usage": True},
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = events(response.text)
    contents = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert contents[0] == ""  # the role chunk
    assert len([c for c in contents if c]) == 12
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 64, "completion_tokens": 12, "total_tokens": 76}


async def test_streaming_without_include_usage_has_no_usage_chunk(client: httpx.AsyncClient) -> None:
    response = await complete(client, messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=3)
    assert all("usage" not in c for c in events(response.text))


async def test_non_streaming_answers_with_usage_and_the_default_length(client: httpx.AsyncClient) -> None:
    response = await complete(client, messages=[{"role": "user", "content": "hi"}])
    body = response.json()
    assert body["usage"]["completion_tokens"] == 512
    assert len(body["choices"][0]["message"]["content"].split()) == 512


async def test_max_completion_tokens_wins_over_max_tokens(client: httpx.AsyncClient) -> None:
    response = await complete(
        client, messages=[{"role": "user", "content": "hi"}], max_tokens=50, max_completion_tokens=5
    )
    assert response.json()["usage"]["completion_tokens"] == 5


async def test_the_same_seed_and_prompt_give_the_same_text(client: httpx.AsyncClient) -> None:
    first = await complete(client, messages=[{"role": "user", "content": "same"}], max_tokens=20)
    second = await complete(client, messages=[{"role": "user", "content": "same"}], max_tokens=20)
    content = first.json()["choices"][0]["message"]["content"]
    assert content == second.json()["choices"][0]["message"]["content"]


async def test_calc_directive_streams_a_native_tool_call(client: httpx.AsyncClient) -> None:
    response = await complete(
        client, messages=[{"role": "user", "content": "calc: 2+2"}], tools=TOOLS, stream=True
    )
    chunks = events(response.text)
    pieces = [d["tool_calls"][0] for c in chunks if (d := c["choices"][0]["delta"]).get("tool_calls")]
    assert pieces[0]["function"]["name"] == "calculator"
    assert json.loads("".join(p["function"]["arguments"] for p in pieces)) == {"expression": "2+2"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_calc_directive_in_prompted_mode_streams_a_tool_call_block(client: httpx.AsyncClient) -> None:
    messages = [{"role": "system", "content": PROMPTED_SYSTEM}, {"role": "user", "content": "calc: 2+2"}]
    response = await complete(client, messages=messages, stream=True)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events(response.text))
    assert text == prompted_call_text([("calculator", {"expression": "2+2"})])


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": MODEL, "messages": []}, 400, None),
        ({"model": MODEL}, 400, None),
        ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 400, None),
        ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "n": 2}, 400, None),
        ({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}, 404, "model_not_found"),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 20_000},
            400,
            "context_length_exceeded",
        ),
    ],
)
async def test_errors_are_openai_style_json(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, code: str | None
) -> None:
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code


async def test_a_body_that_is_not_json_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", content=b"{not json")
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]


async def test_unknown_routes_are_json_404s(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["message"]


async def test_scripted_failure_before_streaming_is_a_500(client: httpx.AsyncClient) -> None:
    response = await complete(client, messages=[{"role": "user", "content": "fail: before"}], stream=True)
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not exported")


async def test_metrics_export_vllm_names_with_the_model_label_and_move(client: httpx.AsyncClient) -> None:
    names = [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:time_to_first_token_seconds_count",
        "vllm:inter_token_latency_seconds_count",
        "vllm:e2e_request_latency_seconds_count",
    ]
    before = (await client.get("/metrics")).text
    assert all(metric(before, n, model_name=MODEL) == 0 for n in names[3:])
    assert "gpu_cache_usage_perc" not in before
    await complete(client, messages=[{"role": "user", "content": "a" * 400}], max_tokens=7)
    await complete(client, messages=[{"role": "user", "content": "b" * 400}], max_tokens=7)
    after = (await client.get("/metrics")).text
    assert metric(after, "vllm:prompt_tokens_total", model_name=MODEL) == 2 * 104
    assert metric(after, "vllm:generation_tokens_total", model_name=MODEL) == 14
    assert metric(after, "vllm:time_to_first_token_seconds_count", model_name=MODEL) == 2
    assert metric(after, "vllm:inter_token_latency_seconds_count", model_name=MODEL) == 12
    assert metric(after, "vllm:e2e_request_latency_seconds_count", model_name=MODEL) == 2
    assert metric(after, "vllm:request_success_total", model_name=MODEL, finished_reason="length") == 2
    # Emulated seconds, whatever the time scale: at least the profile's prefill of 104 tokens.
    assert metric(after, "vllm:time_to_first_token_seconds_sum", model_name=MODEL) > 2 * 104 * 0.0008


async def test_scripted_midstream_failure_drops_the_stream_after_a_few_tokens(
    client: httpx.AsyncClient,
) -> None:
    with pytest.raises(ScriptedMidstreamFailure):
        await complete(client, messages=[{"role": "user", "content": "fail: midstream"}], stream=True)
