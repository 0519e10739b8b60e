"""The HTTP/1.1 server protocol `chatstack serve` runs: uvicorn's httptools protocol with a bound on
request heads, and the errors it answers itself (before any app code runs) in chatstack's JSON shape.

httptools (llhttp) sets no limit on a request line or on headers, and uvicorn adds none (only its h11
protocol has `h11_max_incomplete_event_size`, at a fraction of httptools' speed): a client could send a
100 MB `Authorization` header and the server would hold all of it, several times over while the parser
grows it, before the app could answer 401. Here a request head over MAX_REQUEST_HEAD_BYTES gets a 431.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.errors import error_body

log = logging.getLogger("chatstack.http")

MAX_REQUEST_HEAD_BYTES = 64 * 1024
"""Request line plus headers. nginx's default buffers (4 x 8 KiB, see nginx/chatstack.conf) are below it."""
LINGER_S = 2.0
"""After refusing a head, how long the rest of it is read and dropped before the connection closes:
closing with unread data makes the kernel send a reset that can destroy the answer before it is read."""


class RequestHeadTooLarge(Exception):
    """Raised inside the parser's callbacks; it ends parsing of the connection's data."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's `httptools` protocol, refusing request heads over MAX_REQUEST_HEAD_BYTES with a JSON 431.

    Memory per connection stays within the limit plus one socket read: raw bytes are counted while a
    head is incomplete (a header still arriving is held by the parser, out of sight of any callback),
    and the parsed request line and headers are counted exactly as they complete.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True
        self._head_received = 0  # raw bytes since the head began: the bound while a header arrives
        self._head_parsed = 0  # request line and complete headers: the exact size
        self._refused = False
        self._linger: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        # uvicorn's own data_received, with the head bounded and its errors as JSON.
        if self._refused:
            return  # lingering: the rest of a refused head is read and dropped
        self._unset_keepalive_if_required()
        if self._reading_head:
            self._head_received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, RequestHeadTooLarge):
                self._refuse_head()
            else:
                log.warning("invalid HTTP request from %s: %s", self._client_host(), exc)
                self.send_400_response(f"invalid HTTP request: {exc}")
            return
        if self._reading_head and self._head_received > MAX_REQUEST_HEAD_BYTES:
            self._refuse_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    # Parser callbacks.
    def on_message_begin(self) -> None:
        self._reading_head, self._head_parsed = True, 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # Whatever arrives next on this keep-alive connection is the next request's head.
        self._reading_head, self._head_received = True, 0

    def _count(self, size: int) -> None:
        self._head_parsed += size
        if self._head_parsed > MAX_REQUEST_HEAD_BYTES:
            raise RequestHeadTooLarge

    # Answers written straight to the socket: no request reached the app, so no middleware adds these.
    def send_400_response(self, msg: str) -> None:
        self._send_error(400, "invalid_request", msg)

    def _refuse_head(self) -> None:
        message = f"the request line and headers are larger than {MAX_REQUEST_HEAD_BYTES // 1024} KiB"
        request_id = self._send_error(431, "request_header_too_large", message)
        log.warning(
            "refused a request head over %d bytes from %s",
            MAX_REQUEST_HEAD_BYTES,
            self._client_host(),
            extra={"request_id": request_id},
        )

    def _send_error(self, status: int, code: str, message: str) -> str:
        """Answer and close; returns the request id the answer names."""
        request_id = uuid.uuid4().hex
        if self.transport.is_closing():
            return request_id
        self._refused = True
        body = json.dumps(error_body(code, message, status)).encode()
        reason = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}[status]
        head = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-request-id: " + request_id.encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        if self.transport.can_write_eof():
            # Half-close: the client sees the answer end, and its unread rest is drained, not reset.
            self.transport.write_eof()
            self._linger = self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()
        return request_id

    def _client_host(self) -> str:
        return self.client[0] if self.client else "unknown"
