"""One HTTP request and its response as an engine saw it, and the interface every engine offers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: scheme, host and port, plus the path prefix of the base URL."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, base_url: str) -> Origin:
        """`http://host:port/prefix` → Origin; raises ValueError for anything but http(s)."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, got {base_url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


@dataclass(slots=True)
class Request:
    """A request ready to send: built, and its bytes encoded, before the clock starts."""

    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    _wire: bytes | None = field(default=None, repr=False, compare=False)

    def wire(self, origin: Origin) -> bytes:
        """The HTTP/1.1 bytes for this request (keep-alive, explicit length), encoded once."""
        if self._wire is None:
            self._wire = self._encode(origin)
        return self._wire

    def _encode(self, origin: Origin) -> bytes:
        lines = [f"{self.method} {origin.prefix}{self.path} HTTP/1.1", f"host: {origin.host_header}"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"content-length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


@dataclass(slots=True)
class Exchange:
    """What happened to one request. Times are `time.monotonic()` seconds.

    `chunks` holds the response body as it arrived, each piece with the time its bytes reached this
    machine (the kernel's receive timestamp where the engine can read it, else the time the engine saw
    them), so parsing can happen after the measurement without changing any timing.
    """

    sent_at: float = 0.0
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    ended_at: float = 0.0
    error: str | None = None
    reused_connection: bool = False
    clock: str = "user"
    """`kernel` when receive times come from the socket (SO_TIMESTAMPNS), `user` otherwise."""

    @property
    def ok(self) -> bool:
        return self.error is None and 200 <= self.status < 300

    def body(self) -> bytes:
        return b"".join(piece for _, piece in self.chunks)


Done = Callable[[Exchange], None]


class Engine(Protocol):
    """Sends requests to one origin. `start` must not block: the open-loop scheduler calls it on time."""

    origin: Origin
    name: str

    def start(self, request: Request, on_done: Done, timeout_s: float) -> Exchange:
        """Send now; call `on_done` (from the event loop) when the response ended or failed."""
        ...

    async def fetch(self, request: Request, timeout_s: float) -> Exchange:
        """Send now and wait for the whole response."""
        ...

    async def close(self) -> None:
        """Close every connection."""
        ...
