"""The frames `tools.worker_pool` and `tools.worker_process` exchange over a worker's stdin and stdout.

A frame is a 4-byte big-endian length, then that many bytes of UTF-8 JSON holding one object.
- child -> parent, once: `{"ready": true, "pid": int, "memory_limit": "RLIMIT_AS" | "RLIMIT_DATA" | "none"}`
- parent -> child: `{"function": "module:name", "args": [...], "cpu_s": float}`
- child -> parent: `{"result": <json>}`, or `{"error": {"type": "MemoryError" | ..., "message": str}}`
"""

from __future__ import annotations

import json
import struct
from typing import Any

__all__ = ["HEADER", "MAX_FRAME_BYTES", "FrameError", "body_length", "decode", "encode"]

HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 1 << 20
"""Requests and replies are small (an expression, a number); anything larger is a broken peer."""


class FrameError(ValueError):
    """The bytes are not a frame of this protocol."""


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    if len(body) > MAX_FRAME_BYTES:
        raise FrameError(f"a {len(body)}-byte message is over the {MAX_FRAME_BYTES}-byte limit")
    return HEADER.pack(len(body)) + body


def body_length(header: bytes) -> int:
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise FrameError(f"a {length}-byte frame is over the {MAX_FRAME_BYTES}-byte limit")
    return int(length)


def decode(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except ValueError:
        raise FrameError("a frame that is not JSON") from None
    if not isinstance(message, dict):
        raise FrameError("a frame that is not a JSON object")
    return message
