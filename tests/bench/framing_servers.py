"""Two small real servers for the bench's framing tests, each streaming with its library's own framing.

    python -m tests.bench.framing_servers --kind http1.0|aiohttp --port PORT [--ttft-ms 40 --tpot-ms 4]

- `http1.0`: the standard library's `http.server`, which speaks HTTP/1.0: no Content-Length, no chunks,
  the body ends when the server closes the connection, one request per connection.
- `aiohttp`: aiohttp's web server: chunked transfer coding on keep-alive connections.

Both stream chat completions the way `bench.reference_server` does (the first token `ttft-ms` after
the request, then one every `tpot-ms` on absolute deadlines, `max_tokens` of them, then usage and
`[DONE]`), answer `GET /health`, and report what each stream really produced at
`GET /stats?detail=1&reset=1`, so a test compares the bench with the server's own record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Streams = list[tuple[int, float, float]]
"""(prompt words, true TTFT ms, true TPOT ms) per finished stream."""


def _event(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def _token(first: bool) -> bytes:
    delta = {"role": "assistant", "content": " tok"} if first else {"content": " tok"}
    return _event({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]})


def _tail(prompt: int, count: int) -> bytes:
    usage = {"prompt_tokens": prompt, "completion_tokens": count, "total_tokens": prompt + count}
    return _event({"object": "chat.completion.chunk", "choices": [], "usage": usage}) + _event("[DONE]")


def _request_shape(body: bytes) -> tuple[int, int]:
    """(prompt words, tokens to send) of a chat completions request."""
    data = json.loads(body)
    prompt = sum(len(str(m.get("content", "")).split()) for m in data.get("messages", []))
    return prompt, int(data.get("max_tokens") or 10)


def _stats(streams: Streams, query: str) -> dict[str, Any]:
    document: dict[str, Any] = {"requests": len(streams), "streams": [list(s) for s in streams]}
    if "reset=1" in query:
        streams.clear()
    return document


def serve_http10(port: int, ttft_s: float, tpot_s: float) -> None:
    streams: Streams = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def setup(self) -> None:
            super().setup()
            # One write per token must leave at once (Nagle would hold it for the client's ACK).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, document: dict[str, Any]) -> None:
            data = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            self._json(_stats(streams, query) if path == "/stats" else {"status": "ok"})

        def do_POST(self) -> None:
            arrived = time.monotonic()
            prompt, count = _request_shape(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            first = last = 0.0
            for index in range(count):
                time.sleep(max(0.0, arrived + ttft_s + index * tpot_s - time.monotonic()))
                self.wfile.write(_token(index == 0))
                last = time.monotonic()
                first = first or last
            self.wfile.write(_tail(prompt, count))
            tpot = (last - first) / (count - 1) if count > 1 else 0.0
            streams.append((prompt, (first - arrived) * 1000, tpot * 1000))

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def serve_aiohttp(port: int, ttft_s: float, tpot_s: float) -> None:
    from aiohttp import web

    streams: Streams = []

    async def completions(request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        prompt, count = _request_shape(await request.read())
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        first = last = 0.0
        for index in range(count):
            await asyncio.sleep(max(0.0, arrived + ttft_s + index * tpot_s - time.monotonic()))
            await response.write(_token(index == 0))
            last = time.monotonic()
            first = first or last
        await response.write(_tail(prompt, count))
        await response.write_eof()
        streams.append((prompt, (first - arrived) * 1000, (last - first) / max(1, count - 1) * 1000))
        return response

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(_stats(streams, request.query_string))

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/stats", stats)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", choices=["http1.0", "aiohttp"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ttft-ms", type=float, default=40.0)
    parser.add_argument("--tpot-ms", type=float, default=4.0)
    args = parser.parse_args()
    serve = serve_http10 if args.kind == "http1.0" else serve_aiohttp
    serve(args.port, args.ttft_ms / 1000, args.tpot_ms / 1000)


if __name__ == "__main__":
    main()
