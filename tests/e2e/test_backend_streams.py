"""A model backend may frame its event stream any way Server-Sent Events allow: the answer is the same."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import yaml
from aiohttp import web

from tests.support.http_servers import serving
from tests.support.sse import answer_text, ask, new_conversation

pytestmark = pytest.mark.slow


def chunk(content: str) -> str:
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": None}
    return json.dumps({"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [choice]})


def cr_line_ends(contents: list[str]) -> bytes:
    return b"".join(f"data: {chunk(c)}\r\r".encode() for c in contents) + b"data: [DONE]\r\r"


def data_over_several_lines(contents: list[str]) -> bytes:
    # JSON allows a line break between its tokens; SSE joins an event's `data:` lines with one.
    events = ["data: " + chunk(c).replace(", ", ",\ndata: ") + "\n\n" for c in contents]
    return "".join(events).encode() + b"data: [DONE]\n\n"


FRAMINGS: dict[str, tuple[list[str], Callable[[list[str]], bytes]]] = {
    "cr": (["Carriage ", "returns ", "only."], cr_line_ends),
    "lines": (["Data ", "over ", "several lines."], data_over_several_lines),
}


@asynccontextmanager
async def backend_at(base_url: str) -> AsyncIterator[None]:
    """An OpenAI-compatible backend that answers a question naming a framing with that framing."""

    async def chat(request: web.Request) -> web.StreamResponse:
        question = (await request.json())["messages"][-1]["content"]
        contents, framing = FRAMINGS[question]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(framing(contents))
        return response

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    async with serving(app, port=int(base_url.rsplit(":", 1)[1].split("/")[0])):
        yield


@pytest.mark.parametrize("framing", list(FRAMINGS))
async def test_answers_stream_whatever_the_framing(
    client: httpx.AsyncClient, chatstack_env: dict[str, str], framing: str
) -> None:
    backends = yaml.safe_load(Path(chatstack_env["CHATSTACK_BACKENDS_FILE"]).read_text())["backends"]
    url = next(b["base_url"] for b in backends if b["name"] == "mortal")
    async with backend_at(url):
        cid = await new_conversation(client, backend="mortal")
        events = await ask(client, cid, framing)
    assert [e.data for e in events if e.type == "run.error"] == []
    assert events[-1].data["status"] == "completed"
    assert answer_text(events) == "".join(FRAMINGS[framing][0])
