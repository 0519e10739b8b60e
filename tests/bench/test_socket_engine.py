"""The socket engine against real servers: streaming, keep-alive, every HTTP/1.1 framing, failures,
kernel receive stamps."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from bench.clients.clock import now
from bench.clients.exchange import Request
from bench.clients.openai_chat import chat_request, read_chat_stream
from bench.clients.socket_engine import SocketEngine
from tests.bench.conftest import ReferenceFactory
from tests.support.processes import free_port

pytestmark = pytest.mark.slow


async def test_streams_with_kernel_stamps_and_reuses_connections(reference_servers: ReferenceFactory) -> None:
    server = reference_servers(ttft_ms=30, tpot_ms=4, output_tokens=5)
    engine = await SocketEngine.open(server.url)
    try:
        request = chat_request(model="reference", prompt="hello there", max_tokens=5)
        first = await engine.fetch(request, 10)
        second = await engine.fetch(request, 10)
        for exchange in (first, second):
            outcome = read_chat_stream(exchange)
            assert outcome.error is None, outcome.error
            assert outcome.completion_tokens == 5
            assert outcome.prompt_tokens == 2
            assert exchange.clock == "kernel"
            ttft = outcome.token_times[0] - exchange.sent_at
            assert 0.029 < ttft < 0.5
        assert not first.reused_connection
        assert second.reused_connection
        assert engine.open_connections == 1
        missing = await engine.fetch(Request("GET", "/nothing"), 5)
        assert missing.status == 404
        assert missing.ok is False
        assert b"not found" in missing.body()
    finally:
        await engine.close()


async def test_a_closed_keep_alive_connection_is_retried_once() -> None:
    """A server that closes idle connections: the next request goes out again on a fresh one."""
    port = free_port()
    answers = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answers
        await reader.readuntil(b"\r\n\r\n")
        answers += 1
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # no keep-alive, though the response did not say so

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    engine = await SocketEngine.open(f"http://127.0.0.1:{port}")
    try:
        assert (await engine.fetch(Request("GET", "/"), 5)).body() == b"ok"
        await asyncio.sleep(0.05)
        again = await engine.fetch(Request("GET", "/"), 5)
        assert again.ok
        assert again.body() == b"ok"
        assert answers == 2
    finally:
        await engine.close()
        server.close()


async def test_failures_are_reported_not_raised() -> None:
    refused = await SocketEngine.open(f"http://127.0.0.1:{free_port()}")
    exchange = await refused.fetch(Request("GET", "/"), 5)
    assert exchange.error is not None
    assert "refused" in exchange.error

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    engine = await SocketEngine.open(f"http://127.0.0.1:{silent.getsockname()[1]}")
    started = now()
    timed_out = await engine.fetch(Request("GET", "/"), 0.2)
    assert timed_out.error == "no complete response within 0.2 s"
    assert 0.15 < now() - started < 5
    await engine.close()
    silent.close()


@asynccontextmanager
async def raw_server(answer: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> AsyncIterator[str]:
    """A server that reads one request per connection and writes whatever `answer` writes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        await reader.readexactly(length)
        await answer(writer)
        writer.close()

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def test_a_body_that_ends_with_the_connection_is_complete() -> None:
    """Neither Content-Length nor chunked: the server's close ends the body (RFC 9112, 6.3)."""
    closed_at: list[float] = []

    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
        for piece in (b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
        closed_at.append(now())

    async with raw_server(answer) as url:
        engine = await SocketEngine.open(url)
        try:
            first = await engine.fetch(Request("POST", "/", b"{}"), 5)
            second = await engine.fetch(Request("POST", "/", b"{}"), 5)
        finally:
            await engine.close()
    for exchange in (first, second):
        assert exchange.error is None
        assert exchange.ok
        assert exchange.body() == b"data: 1\n\ndata: 2\n\ndata: 3\n\n"
        assert [piece for _, piece in exchange.chunks] == [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"]
        # It ended with its last byte, not with the close 50 ms later.
        assert exchange.ended_at == exchange.chunks[-1][0]
    assert first.ended_at < closed_at[0]
    assert not second.reused_connection  # the close ended the first connection's life too
    assert engine.open_connections == 0


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 50, "50 of its 100 content-length bytes"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n", "before the last chunk"),
        (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-", "before the response headers ended"),
        (b"", "closed the connection without answering"),
    ],
)
async def test_a_response_cut_short_is_a_failure_that_says_how(response: bytes, reason: str) -> None:
    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(response)
        await writer.drain()

    async with raw_server(answer) as url:
        engine = await SocketEngine.open(url)
        try:
            exchange = await engine.fetch(Request("GET", "/"), 5)
        finally:
            await engine.close()
    assert exchange.error is not None
    assert reason in exchange.error
    assert not exchange.ok


async def test_informational_responses_before_the_answer_are_skipped() -> None:
    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello")
        await writer.drain()

    async with raw_server(answer) as url:
        engine = await SocketEngine.open(url)
        try:
            exchange = await engine.fetch(Request("GET", "/"), 5)
        finally:
            await engine.close()
    assert exchange.ok, exchange.error
    assert exchange.status == 200
    assert exchange.headers == {"content-type": "text/plain", "content-length": "5"}
    assert exchange.body() == b"hello"


@pytest.mark.parametrize("framing", ["chunked", "close", "http1.0"])
async def test_a_json_answer_with_content_length(framing: str, reference_servers: ReferenceFactory) -> None:
    """Non-streamed JSON (Content-Length) on a keep-alive connection, and from servers that close."""
    server = reference_servers(ttft_ms=20, tpot_ms=2, output_tokens=4, framing=framing)
    engine = await SocketEngine.open(server.url)
    body = json.dumps(
        {"model": "reference", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    )
    request = Request("POST", "/chat/completions", body.encode(), (("content-type", "application/json"),))
    try:
        answers = [await engine.fetch(request, 10) for _ in range(2)]
        for exchange in answers:
            assert exchange.ok, exchange.error
            assert int(exchange.headers["content-length"]) == len(exchange.body())
            document = json.loads(exchange.body())
            assert document["usage"]["completion_tokens"] == 3
            assert document["choices"][0]["message"]["content"] == " tok" * 3
        assert answers[1].reused_connection is (framing == "chunked")
        assert engine.open_connections == (1 if framing == "chunked" else 0)
    finally:
        await engine.close()
