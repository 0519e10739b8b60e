"""Server-Sent Events from timestamped body pieces: each event is stamped when its last byte arrived."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SseEvent:
    at: float
    event: str
    data: str
    id: str | None = None


def iter_events(chunks: Iterable[tuple[float, bytes]]) -> Iterator[SseEvent]:
    """Parse an event stream (any of `\\n`, `\\r\\n` line ends; comments skipped; multi-line data joined).

    An event is stamped with the arrival time of the piece that completed it (its blank line), which
    is the moment a client could first have used it.
    """
    buffer = b""
    for stamp, piece in chunks:
        buffer += piece
        if b"\n\n" not in buffer and b"\r\n\r\n" not in buffer:
            continue
        normalized = buffer.replace(b"\r\n", b"\n")
        *complete, buffer = normalized.split(b"\n\n")
        for block in complete:
            event = _parse_block(block, stamp)
            if event is not None:
                yield event


def _parse_block(block: bytes, stamp: float) -> SseEvent | None:
    name, data, event_id, seen = "message", [], None, False
    for raw in block.decode("utf-8", errors="replace").split("\n"):
        if not raw or raw.startswith(":"):
            continue
        field, _, value = raw.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
            seen = True
        elif field == "event":
            name, seen = value, True
        elif field == "id":
            event_id = value
    if not seen:
        return None
    return SseEvent(stamp, name, "\n".join(data), event_id)
