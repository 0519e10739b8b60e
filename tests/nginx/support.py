"""Running the real nginx (through app.nginx_runner) from synchronous fixtures, and measuring streams."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from httpx_sse import aconnect_sse

from app.nginx_config import ProxyOptions
from app.nginx_runner import NginxProcess, find_nginx
from backends import serving_metrics
from tests.support.processes import ServerProcess, free_port

T = TypeVar("T")

SSE_PING_S = 2.0
"""The app's ping interval in these tests: far below nginx's read timeout, so idle streams survive."""
READ_TIMEOUT_S = 5.0
"""nginx's proxy_read_timeout in these tests (production: 600 s): above the ping, below an idle run."""
BODY_LIMIT = "64k"


class LoopThread:
    """An event loop in a thread, so module-scoped fixtures can own an asyncio subprocess across tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="nginx-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Front:
    """A running nginx in front of chatstack."""

    process: NginxProcess
    options: ProxyOptions

    @property
    def url(self) -> str:
        return self.options.url

    def access_log(self) -> list[dict[str, Any]]:
        text = self.process.access_log.read_text() if self.process.access_log.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def upstream_of(server: ServerProcess) -> str:
    return str(urlsplit(server.url).netloc)


def fresh_prefix(nginx_output: Path, name: str) -> Path:
    # Under test-output/, not pytest's tmp (0700 for root): nginx's workers run as nobody under root.
    prefix = nginx_output / name
    shutil.rmtree(prefix, ignore_errors=True)
    return prefix


def proxy_options(server: ServerProcess, **overrides: object) -> ProxyOptions:
    """The production template with test timings and a rate limit no ordinary test reaches."""
    values: dict[str, object] = {
        "listen_port": free_port(),
        "upstreams": (upstream_of(server),),
        "rate_per_s": 1000.0,
        "burst": 1000,
        "body_limit": BODY_LIMIT,
        "read_timeout_s": READ_TIMEOUT_S,
        "worker_processes": "2",
        **overrides,
    }
    return ProxyOptions(**values)  # type: ignore[arg-type]


@contextmanager
def running_front(options: ProxyOptions, prefix: Path) -> Iterator[Front]:
    """nginx from a kept prefix (its logs stay for the test to read), stopped at exit."""
    find_nginx()  # fails loudly when nginx is missing: CI installs it, so no skip here
    loop = LoopThread()
    process = NginxProcess(options, prefix=prefix)
    try:
        loop.run(process.start())
        yield Front(process, options)
    finally:
        loop.run(process.stop(graceful=False))
        loop.close()


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 made with Debian's openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass(frozen=True)
class Arrivals:
    """When each event of one run arrived, in seconds after the message was sent."""

    types: list[str]
    times: list[float]

    def first(self, kind: str) -> float:
        return next(t for k, t in zip(self.types, self.times, strict=True) if k == kind)

    def of(self, kind: str) -> list[float]:
        return [t for k, t in zip(self.types, self.times, strict=True) if k == kind]

    def spread(self, kind: str = "message.delta") -> float:
        times = self.of(kind)
        return times[-1] - times[0]

    def median_gap(self, kind: str = "message.delta") -> float:
        times = self.of(kind)
        return statistics.median(b - a for a, b in itertools.pairwise(times))


async def timed_run(client: httpx.AsyncClient, conversation_id: str, content: str) -> Arrivals:
    """Send a message and record when each of its run's events arrives."""
    started = time.perf_counter()
    response = await client.post(f"/api/conversations/{conversation_id}/messages", json={"content": content})
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    types: list[str] = []
    times: list[float] = []
    async with aconnect_sse(client, "GET", f"/api/runs/{run_id}/events") as source:
        assert source.response.status_code == 200
        async for sse in source.aiter_sse():
            if sse.event and sse.data:
                types.append(sse.event)
                times.append(time.perf_counter() - started)
    return Arrivals(types, times)


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0-1), as the benchmark computes percentiles."""
    return serving_metrics.percentile(values, q * 100)
