"""The fast engine: HTTP/1.1 on non-blocking sockets, driven by callbacks, stamped by the kernel.

Why not aiohttp or httpx: at hundreds of streams per second, a load generator's own overhead shows up
as latency it attributes to the server. This engine spends no coroutine or task per request and no
future per chunk: a request is one `send` of bytes encoded before the run, and each readable socket
is one `recvmsg` whose data is parsed by httptools (C) and stored with the time the *kernel* received
it (SO_TIMESTAMPNS). A receive stamp taken by the kernel does not move when the event loop is late,
so the bench's timing stays right while it is busy; the loop-lag monitor reports when it is not.
Re-measured for issue 11 (`python -m bench.compare_vllm --engines socket,aiohttp,httpx`, the same
reference server, TTFT 50 ms, on a 2-core machine shared with other work, three passes): at 400 and
800 requests/s this engine's TTFT p50 was 0.5-2.0 ms above the server's own record and the aiohttp
engine's 1.6-178 ms; at 1,200/s 5.3 ms against 372 ms in the quietest pass; the aiohttp engine used
1.6-1.8 times the CPU per request where neither lagged, and the httpx engine fell behind from 200/s
on. So the library clients stay options (`--engine`), not the default (numbers in bench/README.md).

Every framing HTTP/1.1 allows for a response is read (RFC 9112, 6.3): chunked, Content-Length, and a
body that ends when the server closes the connection (no length and no chunking: HTTP/1.0 servers,
some HTTP/1.1 streaming servers), on keep-alive connections or not, after interim 1xx responses. A
body cut short by a close (a Content-Length or chunked body not finished) is a failure that says so.
Plain `http://` only (TLS endpoints go through the aiohttp engine; see `engines.py`).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import sys

import httptools

from bench.clients.clock import KernelClock, now
from bench.clients.exchange import Done, Exchange, Origin, Request

# Python 3.11 does not name it; the value is Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS) on every arch
# we run on.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_ANCILLARY = socket.CMSG_SPACE(16)
_READ_SIZE = 256 * 1024


class _Connection:
    """One connection, kept alive when the server allows it; it carries one exchange at a time."""

    __slots__ = (
        "_pending",
        "_timer",
        "body_bytes",
        "complete",
        "connected",
        "engine",
        "exchange",
        "fd",
        "first_stamp",
        "headers",
        "in_body",
        "keep_alive",
        "on_done",
        "parser",
        "read_offset",
        "read_size",
        "received",
        "request",
        "retried",
        "sock",
        "stamp",
        "until_close",
    )

    def __init__(self, engine: SocketEngine, sock: socket.socket) -> None:
        self.engine = engine
        self.sock = sock
        self.fd = sock.fileno()
        self.connected = False
        self.exchange: Exchange | None = None
        self.on_done: Done | None = None
        self.request: Request | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.headers: dict[str, str] = {}
        self._pending = b""
        self._timer: asyncio.TimerHandle | None = None
        self.retried = False
        self.complete = False
        self.keep_alive = False
        self.in_body = self.until_close = False
        self.received = self.body_bytes = 0
        self.stamp = self.first_stamp = 0.0
        self.read_size = self.read_offset = 0

    # -- lifecycle -------------------------------------------------------------------------------
    def begin(self, exchange: Exchange, request: Request, on_done: Done, timer: asyncio.TimerHandle) -> None:
        self.exchange, self.request, self.on_done, self._timer = exchange, request, on_done, timer
        self.parser = httptools.HttpResponseParser(self)
        self.headers = {}
        self.complete = self.in_body = self.until_close = False
        self.received = self.body_bytes = 0
        self._pending = request.wire(self.engine.origin)
        if self.connected:
            self._send()

    def connect_ready(self) -> None:
        loop = self.engine.loop
        loop.remove_writer(self.fd)
        error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self.fail(
                f"connect to {self.engine.origin.host}:{self.engine.origin.port} failed: {os.strerror(error)}"
            )
            return
        self.connected = True
        loop.add_reader(self.fd, self.readable)
        if self.exchange is not None:
            self._send()

    def _send(self) -> None:
        exchange = self.exchange
        assert exchange is not None
        if not exchange.sent_at:
            exchange.sent_at = now()
        try:
            sent = self.sock.send(self._pending)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._lost(f"send failed: {exc}")
            return
        self._pending = self._pending[sent:]
        if self._pending:
            self.engine.loop.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        self.engine.loop.remove_writer(self.fd)
        if self.exchange is not None and self._pending:
            self._send()

    def readable(self) -> None:
        sock = self.sock
        try:
            # The kernel stamps a read with its *last* segment's arrival. Peeking one byte first gives
            # the first pending segment's stamp too, so when a busy loop lets several chunks pile up,
            # the first of them (the first token, for TTFT) still gets its own arrival time.
            _, first_ancillary, _, _ = sock.recvmsg(1, _ANCILLARY, socket.MSG_PEEK)
            # Into one reused buffer: a fresh 256 KiB bytes object per read would be mmap'ed, faulted
            # in and unmapped every time, which costs more than everything else here together.
            size, ancillary, _, _ = sock.recvmsg_into([self.engine.buffer], _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(f"receive failed: {exc}")
            return
        data = self.engine.buffer[:size]
        if not size:
            if self.exchange is not None and self.until_close:
                # A body with neither Content-Length nor chunked framing ends when the connection
                # does (RFC 9112, 6.3): this close is the response's end, not a failure.
                self._finish(keep=False)
            else:
                self._lost(self._cut_short())
            return
        exchange = self.exchange
        if exchange is None:  # bytes on an idle connection: nothing can be waiting for them
            self.close()
            return
        clock = self.engine.clock
        if ancillary:
            exchange.clock = "kernel"
            last = clock.from_cmsg(ancillary[0][2])
            first = clock.from_cmsg(first_ancillary[0][2]) if first_ancillary else last
        else:
            first = last = now()
        # A stamp is never earlier than the send: the clock offset is estimated, the send is not.
        floor = exchange.sent_at
        self.first_stamp, self.stamp = max(first, floor), max(last, floor)
        self.read_size, self.read_offset = size, 0
        self.received += size
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(f"invalid HTTP response: {exc}")
            return
        if self.complete:
            self._finish(keep=self.keep_alive)

    def _cut_short(self) -> str:
        """Why a connection that closed mid-response means a failed exchange, in the reader's words."""
        if self.received == 0:
            return "the server closed the connection without answering"
        if not self.in_body:
            return "the server closed the connection before the response headers ended"
        length = self.headers.get("content-length")
        if length is not None:
            return (
                "the server closed the connection before the response ended "
                f"({self.body_bytes} of its {length} content-length bytes)"
            )
        return "the server closed the connection before the response ended (before the last chunk)"

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        # Also after an informational (1xx) response, which precedes the real one on the same read.
        self.headers = {}
        self.in_body = self.until_close = False

    def on_header(self, name: bytes, value: bytes) -> None:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        previous = self.headers.get(key)
        self.headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        assert self.exchange is not None
        status = self.parser.get_status_code()
        self.exchange.status = status
        self.exchange.headers = self.headers
        self.in_body = True
        self.until_close = _ends_at_close(status, self.headers)

    def on_body(self, body: bytes) -> None:
        assert self.exchange is not None
        if not body:
            return
        self.body_bytes += len(body)
        # Pieces of one read arrived between its first and last segment: the first piece gets the
        # first stamp, later ones a time interpolated by byte position (exact when the read was one
        # segment, which is the case whenever the loop keeps up).
        start = self.read_offset
        self.read_offset += len(body)
        if start == 0 or self.stamp == self.first_stamp:
            stamp = self.first_stamp
        else:
            share = min(1.0, self.read_offset / self.read_size)
            stamp = self.first_stamp + (self.stamp - self.first_stamp) * share
        self.exchange.chunks.append((stamp, body))

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # informational (100 Continue, 103 Early Hints): the real response follows
        # httptools answers should_keep_alive() only while inside this callback.
        self.complete = True
        self.until_close = False
        self.keep_alive = self.parser.should_keep_alive()

    # -- endings ---------------------------------------------------------------------------------
    def _finish(self, keep: bool, error: str | None = None) -> None:
        exchange, on_done = self.exchange, self.on_done
        assert exchange is not None
        assert on_done is not None
        if self._timer is not None:
            self._timer.cancel()
        exchange.ended_at = self.stamp or now()
        exchange.error = error
        self.exchange = self.on_done = self.request = None
        self._timer = None
        if keep and error is None:
            self.engine.release(self)
        else:
            self.close()
        on_done(exchange)

    def _lost(self, reason: str) -> None:
        exchange, request, on_done = self.exchange, self.request, self.on_done
        if exchange is None:
            self.close()
            return
        stale = exchange.reused_connection and self.received == 0 and not self.retried
        if stale and request is not None and on_done is not None and self._timer is not None:
            # A keep-alive connection the server had already closed: it never saw this request,
            # so send it again on a fresh connection (once), as every HTTP client does.
            timer = self._timer
            self.exchange = self.on_done = self.request = None
            self._timer = None
            self.close()
            fresh = self.engine.connect()
            fresh.retried = True
            exchange.sent_at = 0.0
            fresh.begin(exchange, request, on_done, timer)
            return
        self.fail(reason)

    def fail(self, reason: str) -> None:
        if self.exchange is None:
            self.close()
            return
        self.stamp = now()
        self._finish(keep=False, error=reason)

    def timeout(self, seconds: float) -> None:
        if self.exchange is not None:
            self._timer = None
            self.fail(f"no complete response within {seconds:g} s")

    def close(self) -> None:
        loop = self.engine.loop
        if self.fd >= 0:
            loop.remove_reader(self.fd)
            loop.remove_writer(self.fd)
            self.engine.forget(self)
            self.sock.close()
            self.fd = -1


def _ends_at_close(status: int, headers: dict[str, str]) -> bool:
    """Whether a response's body runs until the server closes the connection (RFC 9112, 6.3).

    Responses without a body (1xx, 204, 304) end with their headers; a chunked body ends with its
    last chunk; a Content-Length body after that many bytes; any other body (no length, or a transfer
    coding that is not chunked last) when the connection closes, as HTTP/1.0 servers and some
    HTTP/1.1 streaming servers end theirs. The bench sends no HEAD requests, which would end early too.
    """
    if status < 200 or status in (204, 304):
        return False
    coding = headers.get("transfer-encoding")
    if coding is not None:
        return coding.rsplit(",", 1)[-1].strip().lower() != "chunked"
    return "content-length" not in headers


class SocketEngine:
    """Sends requests to one `http://` origin over pooled keep-alive connections.

    Create it inside the running event loop (`await SocketEngine.open(url)`). Connections are opened on
    demand (or ahead of time with `warm`) and reused; the pool has no upper bound, like vLLM's.
    """

    name = "socket"

    def __init__(self, origin: Origin, address: tuple[int, tuple[str, int]]) -> None:
        if origin.scheme != "http":
            raise ValueError("the socket engine speaks plain http:// only; use the aiohttp engine for TLS")
        self.origin = origin
        self.loop = asyncio.get_running_loop()
        self.clock = KernelClock()
        self._family, self._address = address
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self.buffer = memoryview(bytearray(_READ_SIZE))
        """Shared by every connection: a read is parsed before the next one happens."""
        self.kernel_stamps = sys.platform == "linux"

    @classmethod
    async def open(cls, base_url: str) -> SocketEngine:
        """Resolve the host once and return an engine for it."""
        origin = Origin.parse(base_url)
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
        if not infos:
            raise OSError(f"cannot resolve {origin.host}")
        family, _, _, _, address = infos[0]
        return cls(origin, (family, (str(address[0]), int(address[1]))))

    def connect(self) -> _Connection:
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.kernel_stamps:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:
                self.kernel_stamps = False
        connection = _Connection(self, sock)
        self._all.add(connection)
        result = sock.connect_ex(self._address)
        if result == 0:
            connection.connected = True
            self.loop.add_reader(connection.fd, connection.readable)
        elif result in (errno.EINPROGRESS, errno.EAGAIN):
            self.loop.add_writer(connection.fd, connection.connect_ready)
        else:
            connection.connected = False
            self.loop.call_soon(connection.fail, f"connect failed: {os.strerror(result)}")
        return connection

    def start(self, request: Request, on_done: Done, timeout_s: float) -> Exchange:
        """Send `request` now; `on_done(exchange)` runs on the loop when it ended or failed."""
        exchange = Exchange(clock="user")
        if self._idle:
            connection = self._idle.pop()
            exchange.reused_connection = True
        else:
            connection = self.connect()
        timer = self.loop.call_later(timeout_s, connection.timeout, timeout_s)
        connection.begin(exchange, request, on_done, timer)
        return exchange

    async def fetch(self, request: Request, timeout_s: float) -> Exchange:
        """Send `request` and wait for the whole response."""
        future: asyncio.Future[Exchange] = self.loop.create_future()

        def done(exchange: Exchange) -> None:
            if not future.done():
                future.set_result(exchange)

        self.start(request, done, timeout_s)
        return await future

    async def warm(self, count: int) -> None:
        """Open connections ahead of a run so that its first requests do not pay for the handshake."""
        ready: list[_Connection] = []
        for _ in range(count - len(self._idle)):
            ready.append(self.connect())
        for _ in range(200):
            if all(c.connected or c.fd < 0 for c in ready):
                break
            await asyncio.sleep(0.005)
        self._idle.extend(c for c in ready if c.connected and c.fd >= 0)

    def release(self, connection: _Connection) -> None:
        self._idle.append(connection)

    def forget(self, connection: _Connection) -> None:
        self._all.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)

    @property
    def open_connections(self) -> int:
        return len(self._all)

    async def close(self) -> None:
        """Close every connection; exchanges still running fail."""
        for connection in list(self._all):
            if connection.exchange is not None:
                connection.fail("the bench closed the connection")
            else:
                connection.close()
