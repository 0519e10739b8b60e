"""A fast OpenAI-compatible server with exact, configurable timing: the yardstick for the bench itself.

    python -m bench.reference_server --port 8300 --ttft-ms 50 --tpot-ms 5 --output-tokens 20

Every streamed chat completion sends its first token `ttft-ms` (+ `prefill-us-per-token` x prompt
words) after the request arrived, then one token every `tpot-ms`, all on absolute deadlines so the
schedule never drifts; `max_tokens` / `max_completion_tokens` set the output length (else
`--output-tokens`). It reports `usage` when `stream_options.include_usage` is set. It is written on
bare asyncio protocols (no framework) so that, on a small machine, the server is cheaper to run than
any load generator pointed at it, and `GET /stats` says how late the server itself was in writing
its tokens, so a test can tell the server's error from the client's.

`--framing` picks how each response is delimited on the wire (RFC 9112, 6.3), so a client can be
tested on every way HTTP/1.1 allows: `chunked` (the default, keep-alive), `chunked-close` (chunked,
`Connection: close`, then closed), `length` (the stream's exact Content-Length sent first, keep-alive),
`close` (HTTP/1.1 with neither Content-Length nor Transfer-Encoding: the body ends when the server
closes the connection) and `http1.0` (an HTTP/1.0 server: close-delimited, one response per connection).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, cast

import httptools

from protocol.openai_wire import DONE, ChunkEncoder, completion, content_delta, usage

_TOKEN = " tok"


@dataclass(frozen=True, slots=True)
class Framing:
    """How this server delimits its responses."""

    name: str
    version: bytes = b"HTTP/1.1"
    chunked: bool = False
    length: bool = False
    close: bool = False
    """Close the connection after each response."""
    close_header: bool = False
    """Say so with `Connection: close` (HTTP/1.1 servers that close without saying are valid too)."""


FRAMINGS = {
    f.name: f
    for f in (
        Framing("chunked", chunked=True),
        Framing("chunked-close", chunked=True, close=True, close_header=True),
        Framing("length", length=True),
        Framing("close", close=True),
        Framing("http1.0", version=b"HTTP/1.0", close=True),
    )
}


@dataclass(frozen=True, slots=True)
class Timing:
    """What the server is configured to produce."""

    ttft_s: float
    tpot_s: float
    output_tokens: int
    prefill_s_per_token: float = 0.0
    model: str = "reference"


@dataclass(slots=True)
class ServerStats:
    """How late the server wrote its tokens (its own scheduling error), and how much it served."""

    requests: int = 0
    lateness_s: list[float] = field(default_factory=list)
    streams: list[tuple[int, float, float]] = field(default_factory=list)
    """Per finished stream: (prompt tokens, true TTFT, true TPOT) in seconds, as the server wrote them."""

    def summary(self, detail: bool = False) -> dict[str, Any]:
        lateness = sorted(self.lateness_s)

        def pick(q: float) -> float:
            return lateness[min(len(lateness) - 1, int(q * len(lateness)))] * 1000 if lateness else 0.0

        return {
            "requests": self.requests,
            "writes": len(lateness),
            "lateness_p50_ms": pick(0.5),
            "lateness_p99_ms": pick(0.99),
            "lateness_max_ms": lateness[-1] * 1000 if lateness else 0.0,
        } | ({"streams": [[p, t * 1000, o * 1000] for p, t, o in self.streams]} if detail else {})


class _Encoded:
    """Events pre-encoded once (in the framing's chunks where it has them), so a token is one write."""

    def __init__(self, model: str, framing: Framing) -> None:
        self.framing = framing
        self.encoder = ChunkEncoder("chatcmpl-ref", model, 0)
        self.first = self._frame(self.encoder.delta(content_delta(_TOKEN, role=True)))
        self.token = self._frame(self.encoder.content(_TOKEN))
        self.finish = self._frame(self.encoder.finish("length"))
        self.done = self._frame(DONE) + (b"0\r\n\r\n" if framing.chunked else b"")

    def _frame(self, payload: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(payload), payload) if self.framing.chunked else payload

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        return self._frame(self.encoder.usage(usage(prompt_tokens, completion_tokens)))

    def stream_head(self, length: int) -> bytes:
        """The status line and headers of a stream whose body is `length` bytes."""
        framing = self.framing
        head = framing.version + b" 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        if framing.chunked:
            head += b"transfer-encoding: chunked\r\n"
        if framing.length:
            head += b"content-length: %d\r\n" % length
        if framing.close_header:
            head += b"connection: close\r\n"
        return head + b"\r\n"


def _error(message: str) -> dict[str, Any]:
    """Only the message, unlike `openai_wire.error_body`: the bench quotes these bodies word for word
    in its error summary (and its tests check that it does)."""
    return {"error": {"message": message}}


def _json_response(status: int, body: dict[str, Any], framing: Framing = FRAMINGS["chunked"]) -> bytes:
    data = json.dumps(body).encode()
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"Error")
    close = b"connection: close\r\n" if framing.close and framing.version == b"HTTP/1.1" else b""
    return b"%s %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        framing.version,
        status,
        reason,
        len(data),
        close,
        data,
    )


def _prompt_tokens(body: dict[str, Any]) -> int:
    words = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        words += len(str(content or "").split())
    return words


class _Connection(asyncio.Protocol):
    def __init__(self, timing: Timing, encoded: _Encoded, stats: ServerStats) -> None:
        self.timing, self.encoded, self.stats = timing, encoded, stats
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.pending: asyncio.TimerHandle | None = None  # HTTP/1.1 without pipelining: one at a time
        self.arrived = self.first_written = 0.0
        self.prompt = 0
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pending is not None:
            self.pending.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport:
                self.transport.write(_json_response(400, _error("bad request")))
                self.transport.close()

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        """A JSON response, Content-Length framed; the connection closes after it if the framing says."""
        if self.transport is not None:
            self.transport.write(_json_response(status, body, self.encoded.framing))
            if self.encoded.framing.close:
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url, self.body = b"", []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        path = self.url.split(b"?", 1)[0]
        if path == b"/v1/chat/completions":
            self._completions()
        elif path == b"/v1/models":
            model = {"id": self.timing.model, "object": "model", "owned_by": "reference"}
            self._reply(200, {"object": "list", "data": [model]})
        elif path in (b"/health", b"/healthz"):
            self._reply(200, {"status": "ok"})
        elif path == b"/stats":
            self._reply(200, self.stats.summary(b"detail=1" in self.url))
            if b"reset=1" in self.url:  # so a driver can read one run's numbers at a time
                self.stats.requests, self.stats.lateness_s, self.stats.streams = 0, [], []
        else:
            self._reply(404, _error("not found"))

    def _completions(self) -> None:
        assert self.transport is not None
        self.stats.requests += 1
        try:
            body = json.loads(b"".join(self.body))
        except ValueError:
            self._reply(400, _error("invalid JSON"))
            return
        timing = self.timing
        count = int(body.get("max_completion_tokens") or body.get("max_tokens") or timing.output_tokens)
        prompt = _prompt_tokens(body)
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        first = start + timing.ttft_s + prompt * timing.prefill_s_per_token
        if not body.get("stream"):
            message = {"role": "assistant", "content": _TOKEN * count}
            result = completion("chatcmpl-ref", 0, timing.model, message, "length", usage(prompt, count))
            delay = first + (count - 1) * timing.tpot_s - time.monotonic()
            self.pending = loop.call_later(max(0.0, delay), self._reply, 200, result)
            return
        encoded = self.encoded
        self.tail = encoded.finish + (encoded.usage(prompt, count) if wants_usage else b"") + encoded.done
        length = len(encoded.first) + (count - 1) * len(encoded.token) + len(self.tail)
        self.transport.write(encoded.stream_head(length))
        self.arrived, self.prompt = start, prompt
        self._schedule(loop, first, 0, count)

    def _schedule(self, loop: asyncio.AbstractEventLoop, due: float, index: int, count: int) -> None:
        # Deadlines are absolute (first + i * tpot), so a late write never delays the ones after it.
        delay = due - time.monotonic()
        self.pending = loop.call_later(max(0.0, delay), self._token, loop, due, index, count)

    def _token(self, loop: asyncio.AbstractEventLoop, due: float, index: int, count: int) -> None:
        if self.transport is None:
            return
        written = time.monotonic()
        self.stats.lateness_s.append(written - due)
        encoded = self.encoded
        if index == 0:
            self.first_written = written
            self.transport.write(encoded.first)
        else:
            self.transport.write(encoded.token)
        if index + 1 < count:
            self._schedule(loop, due + self.timing.tpot_s, index + 1, count)
            return
        self.transport.write(self.tail)
        if encoded.framing.close:
            self.transport.close()  # after the buffered writes: this is the close that ends the body
        self.pending = None
        tpot = (written - self.first_written) / (count - 1) if count > 1 else 0.0
        self.stats.streams.append((self.prompt, self.first_written - self.arrived, tpot))


async def serve(
    host: str, port: int, timing: Timing, reuse_port: bool = False, framing: Framing = FRAMINGS["chunked"]
) -> None:
    """Serve until cancelled."""
    loop = asyncio.get_running_loop()
    encoded, stats = _Encoded(timing.model, framing), ServerStats()
    server = await loop.create_server(
        lambda: _Connection(timing, encoded, stats), host, port, backlog=4096, reuse_port=reuse_port
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8300)
    parser.add_argument("--model", default="reference")
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--tpot-ms", type=float, default=5.0)
    parser.add_argument("--output-tokens", type=int, default=20, help="when the request sets no max_tokens")
    parser.add_argument("--prefill-us-per-token", type=float, default=0.0, help="TTFT grows with the prompt")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    parser.add_argument("--framing", choices=sorted(FRAMINGS), default="chunked", help="see above")
    args = parser.parse_args()
    timing = Timing(
        args.ttft_ms / 1000,
        args.tpot_ms / 1000,
        args.output_tokens,
        args.prefill_us_per_token / 1e6,
        args.model,
    )
    import uvloop

    for _ in range(args.workers - 1):
        if os.fork() == 0:
            break
    uvloop.run(serve(args.host, args.port, timing, args.workers > 1, FRAMINGS[args.framing]))


if __name__ == "__main__":
    main()
