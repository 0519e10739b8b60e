"""OpenAI `chat.completion.chunk` Server-Sent Events, pre-rendered so each token costs a concatenation."""

from __future__ import annotations

import json
from typing import Any

DONE = b"data: [DONE]\n\n"


class ChunkEncoder:
    """Renders the SSE events of one streamed completion."""

    __slots__ = ("_head", "_prefix", "_suffix")

    def __init__(self, completion_id: str, model: str, created: int) -> None:
        self._head = f'data: {{"id":{json.dumps(completion_id)},"object":"chat.completion.chunk",'
        self._head += f'"created":{created},"model":{json.dumps(model)},'
        self._prefix = (self._head + '"choices":[{"index":0,"delta":').encode()
        self._suffix = b',"logprobs":null,"finish_reason":null}]}\n\n'

    def delta(self, delta_json: str) -> bytes:
        """One event carrying `delta_json` (a JSON object) as the choice's delta."""
        return self._prefix + delta_json.encode() + self._suffix

    def role(self) -> bytes:
        return self.delta('{"role":"assistant","content":""}')

    def finish(self, reason: str) -> bytes:
        return (
            self._prefix + b'{},"logprobs":null,"finish_reason":' + json.dumps(reason).encode() + b"}]}\n\n"
        )

    def usage(self, usage: dict[str, Any]) -> bytes:
        """The final chunk `stream_options.include_usage` asks for: no choices, just usage."""
        return (
            self._head + f'"choices":[],"usage":{json.dumps(usage, separators=(",", ":"))}}}\n\n'
        ).encode()
