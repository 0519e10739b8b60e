"""The streaming HTTP response of one completion: SSE events as the engine produces tokens.

A bare ASGI callable rather than Starlette's StreamingResponse: one task per stream plus a cheap
disconnect watcher, and no per-chunk async-generator machinery, which matters at 1,000 streams.
With chunk batching (Ray Serve's stream_batching_interval), the first token goes out at once and
later tokens in one write per interval, each still its own SSE event.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.types import Receive, Scope, Send

from backends.emulator.chunking import next_flush
from backends.emulator.engine import Sequence
from backends.emulator.reply import OutputPlan
from backends.emulator.runner import EngineRunner
from backends.emulator.streams import TokenStream
from protocol.openai_wire import DONE, ChunkEncoder, usage

MIDSTREAM_FAILURE_AFTER = 3
_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)
SUBMITTED_HEADER = "x-emulator-submitted-at"
"""Emulated time (seconds since the server started) at which the request entered the deployment."""


class ScriptedMidstreamFailure(RuntimeError):
    """Raised after a few tokens for `fail: midstream`, so the server drops the connection."""


@dataclass(slots=True)
class CompletionStreamResponse:
    """Writes one request's tokens to the client as they appear on its `TokenStream`."""

    runner: EngineRunner
    seq: Sequence
    stream: TokenStream
    plan: OutputPlan
    encoder: ChunkEncoder
    prompt_tokens: int
    include_usage: bool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        submitted = (SUBMITTED_HEADER.encode(), f"{self.seq.submitted_at:.6f}".encode())
        await send({"type": "http.response.start", "status": 200, "headers": [*_HEADERS, submitted]})
        watcher = asyncio.ensure_future(self._watch_disconnect(receive))
        try:
            await self._write(send)
        finally:
            watcher.cancel()
            if not self.stream.finished:
                self.runner.cancel(self.seq)
        if not self.stream.aborted:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _watch_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.stream.abort()

    async def _write(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        stream = self.stream
        interval = self.runner.profile.stream_batching_interval_s * self.runner.time_scale
        sent = 0
        first_flush: float | None = None
        while True:
            until = (
                None
                if first_flush is None or interval <= 0
                else next_flush(first_flush, loop.time(), interval)
            )
            await stream.wait(sent, until)
            if stream.aborted:
                return
            produced = stream.produced
            if produced > sent:
                if self.plan.failure == "midstream" and produced > MIDSTREAM_FAILURE_AFTER:
                    await send(
                        {"type": "http.response.body", "body": self._render(sent, 3), "more_body": True}
                    )
                    raise ScriptedMidstreamFailure("scripted mid-stream failure")
                body = self._render(sent, produced)
                sent = produced
                if first_flush is None:
                    first_flush = loop.time()
                await send({"type": "http.response.body", "body": body, "more_body": True})
            if stream.finished and sent >= stream.produced:
                return

    def _render(self, start: int, end: int) -> bytes:
        encoder, plan = self.encoder, self.plan
        parts = [encoder.role()] if start == 0 else []
        parts.extend(encoder.delta(plan.delta_json(i)) for i in range(start, end))
        if end >= plan.count and self.stream.finished:
            parts.append(encoder.finish(plan.finish_reason))
            if self.include_usage:
                parts.append(encoder.usage(usage(self.prompt_tokens, plan.count)))
            parts.append(DONE)
        return b"".join(parts)
