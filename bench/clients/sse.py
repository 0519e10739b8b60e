"""Server-Sent Events from timestamped body pieces: each event is stamped when its last byte arrived."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from protocol.sse import SseParser


@dataclass(slots=True)
class SseEvent:
    at: float
    event: str
    data: str
    id: str | None = None


def iter_events(chunks: Iterable[tuple[float, bytes]]) -> Iterator[SseEvent]:
    """Parse an event stream (see `protocol.sse`), stamping each event with the arrival time of the
    piece that completed it (its blank line): the moment a client could first have used it."""
    parser = SseParser()
    for stamp, piece in chunks:
        for event in parser.feed(piece):
            yield SseEvent(stamp, event.event, event.data, event.id)
