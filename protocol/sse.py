"""Server-Sent Events (the WHATWG event-stream format): the one parser every client of ours uses.

`SseParser` takes the body's bytes as they arrive, from any HTTP client (aiohttp, httpx, the bench's
raw sockets), and returns the events each piece completed, so a caller can stamp the moment it
received them. Lines end at CR LF, CR or LF and nowhere else: `str.splitlines()` (and with it httpx's
`aiter_lines`) also breaks at U+2028, U+0085 and friends, which JSON written with
`ensure_ascii=False` leaves unescaped inside `data:`. A CR ends its line at once: an event whose
blank line ends in CR is not held back until the next piece shows whether an LF follows.

Not httpx-sse: it reads httpx responses only, decodes to text first, and keeps a trailing CR until
the next piece arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_EVENT_BYTES = 16 * 1024 * 1024
"""The most an unfinished event may hold: far more than chatstack or a model backend ever sends in one
event; only a broken or hostile peer gets there, and would otherwise fill the memory."""


class SseTooLarge(ValueError):
    """The stream sent more than the parser's `max_event_bytes` without ending an event."""


@dataclass(slots=True)
class SseEvent:
    event: str
    """The `event:` field, `message` when there was none."""
    data: str
    """The `data:` lines, joined with LF."""
    id: str | None = None
    """The last `id:` seen so far in the stream (it carries over to later events, as the spec says)."""


class SseParser:
    """Feed it the body's bytes as they arrive; each `feed` returns the events that piece completed.

    Comments (keep-alive pings) and `retry:` fields are dropped: nothing of ours needs them. An event
    with no `data:` line is not dispatched, as the spec says.
    """

    __slots__ = ("_after_cr", "_buffer", "_data", "_data_bytes", "_event", "_id", "_max")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._buffer = b""
        """The unfinished last line (it never holds a CR: a CR ends a line at once)."""
        self._after_cr = False
        """The last piece ended in CR: an LF starting the next one belongs to it."""
        self._event = b""
        self._data: list[bytes] = []
        self._data_bytes = 0
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        if not chunk:
            return []
        if self._after_cr:
            self._after_cr = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._after_cr = chunk[-1] == 0x0D
            chunk = chunk.replace(b"\r\n", b"\n")
            if b"\r" in chunk:
                chunk = chunk.replace(b"\r", b"\n")
        if b"\n" not in chunk:
            self._buffer += chunk
            self._check_size()
            return []
        lines = (self._buffer + chunk).split(b"\n") if self._buffer else chunk.split(b"\n")
        self._buffer = lines.pop()
        events: list[SseEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(self._dispatch())
                else:
                    self._event = b""
                continue
            name, _, value = line.partition(b":")
            if value and value[0] == 0x20:
                value = value[1:]
            if name == b"data":
                self._data.append(value)
                self._data_bytes += len(value)
            elif name == b"event":
                self._event = value
            elif name == b"id" and b"\0" not in value:
                self._id = value.decode("utf-8", "replace")
            # anything else is a comment (an empty name), `retry`, or a field the spec says to ignore
        self._check_size()
        return events

    def _dispatch(self) -> SseEvent:
        data = self._data
        text = data[0] if len(data) == 1 else b"\n".join(data)
        event = SseEvent(
            self._event.decode("utf-8", "replace") if self._event else "message",
            text.decode("utf-8", "replace"),
            self._id,
        )
        self._event, self._data, self._data_bytes = b"", [], 0
        return event

    def _check_size(self) -> None:
        if len(self._buffer) + self._data_bytes > self._max:
            raise SseTooLarge(f"an event of more than {self._max} bytes")
