"""The socket engine against a real server: streaming, keep-alive, failures, kernel receive stamps."""

from __future__ import annotations

import asyncio
import socket

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
