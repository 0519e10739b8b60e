"""A small OpenAI-compatible server that answers by script (see `script.py`), for tests and demos.

python -m backends.scripted.server --port 8101 [--token-delay-ms 5] [--model scripted]
    [--cold-start-s 5 [--idle-s 60] [--refuse-while-starting]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from backends.scripted.cold_start import ColdStart
from backends.scripted.script import Reply, count_tokens, decide, prompted_call_text
from protocol.openai_wire import (
    DONE,
    ChunkEncoder,
    completion,
    error_body,
    new_completion_id,
    tool_call_arguments_delta,
    tool_call_start_delta,
    usage,
)


class MidStreamFailure(Exception):
    """Raised inside the stream so the server drops the connection, as a crashing backend would."""


def create_app(
    model: str = "scripted",
    token_delay_ms: float = 5.0,
    ttft_ms: float = 0.0,
    cold_start: ColdStart | None = None,
) -> Starlette:
    stats = {"requests": 0}

    async def models(_: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "scripted"}]}
        )

    async def health(_: Request) -> Response:
        body: dict[str, Any] = {"status": "ok", "requests": stats["requests"]}
        if cold_start is not None:
            body["replica"] = cold_start.state
            body["replica_starts"] = cold_start.starts
        return JSONResponse(body)

    async def completions(request: Request) -> Response:
        stats["requests"] += 1
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid JSON", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "messages is required", "invalid_request_error")
        if body.get("model") != model:
            message = f"model {body.get('model')!r} not found"
            return _error(404, message, "invalid_request_error", "model_not_found")
        if cold_start is not None and not await cold_start.admit():
            return _error(503, "no replica is running yet; scaling up", "unavailable")
        reply = decide(body)
        if reply.failure == "before":
            return _error(500, "scripted failure", "server_error")
        delay = (reply.delay_ms if reply.delay_ms is not None else token_delay_ms) / 1000
        if body.get("stream"):
            return StreamingResponse(
                _stream(body, reply, model, delay, ttft_ms / 1000), media_type="text/event-stream"
            )
        return JSONResponse(_completion(body, reply, model))

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/health", health),
            Route("/v1/chat/completions", completions, methods=["POST"]),
        ]
    )


def _error(status: int, message: str, kind: str, code: str | None = None) -> Response:
    return JSONResponse(error_body(code, message, kind), status)


async def _stream(
    body: dict[str, Any], reply: Reply, model: str, delay: float, ttft: float
) -> AsyncIterator[bytes]:
    encoder = ChunkEncoder(new_completion_id(), model, int(time.time()))
    if ttft:
        await asyncio.sleep(ttft)
    yield encoder.role()
    tokens = reply.tokens()
    if reply.tool_calls and reply.prompted:
        text = prompted_call_text(reply.tool_calls)
        tokens = [text[i : i + 8] for i in range(0, len(text), 8)]
    sent = 0
    for token in tokens:
        if delay:
            await asyncio.sleep(delay)
        if reply.failure == "midstream" and sent == 3:
            raise MidStreamFailure("scripted mid-stream failure")
        if reply.failure == "garbage" and sent == 2:
            yield b"data: {this is not json\n\n"
            return
        yield encoder.content(token)
        sent += 1
        if reply.hang:
            await asyncio.sleep(3600)
    if reply.tool_calls and not reply.prompted:
        for index, (name, arguments) in enumerate(reply.tool_calls):
            args = arguments if isinstance(arguments, str) else json.dumps(arguments)
            yield encoder.delta(tool_call_start_delta(index, f"call_{uuid.uuid4().hex[:12]}", name))
            # Arguments arrive in pieces, as real servers send them.
            for i in range(0, len(args), 6):
                yield encoder.delta(tool_call_arguments_delta(index, args[i : i + 6]))
    if reply.failure == "nodone":
        return
    yield encoder.finish("tool_calls" if reply.tool_calls else "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        yield encoder.usage(usage(count_tokens(body), max(sent, 1)))
    yield DONE


def _completion(body: dict[str, Any], reply: Reply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.tool_calls and reply.prompted:
        message["content"] = prompted_call_text(reply.tool_calls)
    elif reply.tool_calls:
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": f"call_{uuid.uuid4().hex[:12]}",
                "type": "function",
                "function": {"name": n, "arguments": a if isinstance(a, str) else json.dumps(a)},
            }
            for n, a in reply.tool_calls
        ]
    finish = "tool_calls" if reply.tool_calls else "stop"
    counts = usage(count_tokens(body), max(len(reply.tokens()), 1))
    return completion(new_completion_id(), int(time.time()), model, message, finish, counts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--model", default="scripted")
    parser.add_argument("--token-delay-ms", type=float, default=5.0)
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="extra wait before the first chunk")
    parser.add_argument(
        "--cold-start-s", type=float, help="scale to zero: a replica takes this long to start"
    )
    parser.add_argument("--idle-s", type=float, default=60.0, help="scale back to zero after this idle time")
    parser.add_argument(
        "--refuse-while-starting", action="store_true", help="answer 503 while starting, instead of holding"
    )
    args = parser.parse_args()
    cold_start = (
        ColdStart(args.cold_start_s, args.idle_s, args.refuse_while_starting)
        if args.cold_start_s is not None
        else None
    )

    import uvicorn

    uvicorn.run(
        create_app(args.model, args.token_delay_ms, args.ttft_ms, cold_start),
        host=args.host,
        port=args.port,
        log_level="warning",
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
