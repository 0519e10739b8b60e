"""An incremental Server-Sent Events parser (the WHATWG event-stream format).

Lines end only at CR LF, CR or LF. `str.splitlines()` (and so httpx's `aiter_lines`) also breaks at
U+2028, U+0085 and friends, which JSON written with `ensure_ascii=False` leaves unescaped inside
`data:`; splitting there would cut an event in half.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SseMessage:
    event: str
    data: str
    id: str | None


class SseParser:
    """Feed it decoded text as it arrives; it returns the messages that chunk completed.

    Comments (keep-alive pings) and `retry:` fields are dropped: nothing here needs them.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._after_cr = False
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: str) -> list[SseMessage]:
        if not chunk:
            return []
        if self._after_cr and chunk.startswith("\n"):
            chunk = chunk[1:]  # the LF of a CR LF that was split between chunks
        # A CR ends a line at once (an event must not wait for the next chunk); remember it in case
        # the next chunk starts with the LF of a CR LF.
        self._after_cr = chunk.endswith("\r")
        text = self._buffer + chunk
        lines = _LINE_END.split(text)
        self._buffer = lines.pop()
        messages = []
        for line in lines:
            message = self._line(line)
            if message is not None:
                messages.append(message)
        return messages

    def _line(self, line: str) -> SseMessage | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> SseMessage | None:
        if not self._data:
            self._event = ""
            return None
        message = SseMessage(event=self._event or "message", data="\n".join(self._data), id=self._id)
        # The last event id carries over to later messages (per the spec); the rest starts over.
        self._event, self._data = "", []
        return message
