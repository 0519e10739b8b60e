"""Fixtures: the bench's reference server (exact timing) as a real process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import BIN, ServerProcess, free_port, start_process

ReferenceFactory = Callable[..., ServerProcess]


@pytest.fixture(scope="module")
def reference_servers(log_dir: Path) -> Iterator[ReferenceFactory]:
    """Start `python -m bench.reference_server` with the given timing; all stop with the module."""
    started: list[ServerProcess] = []

    def start(
        ttft_ms: float = 50, tpot_ms: float = 5, output_tokens: int = 20, prefill_us: float = 0
    ) -> ServerProcess:
        port = free_port()
        server = start_process(
            [
                str(BIN / "python"),
                "-m",
                "bench.reference_server",
                "--port",
                str(port),
                "--ttft-ms",
                str(ttft_ms),
                "--tpot-ms",
                str(tpot_ms),
                "--output-tokens",
                str(output_tokens),
                "--prefill-us-per-token",
                str(prefill_us),
            ],
            health_url=f"http://127.0.0.1:{port}/health",
            base_url=f"http://127.0.0.1:{port}/v1",
            env={},
            log_path=log_dir / f"reference-{port}.log",
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def server_stats(server: ServerProcess) -> dict[str, float]:
    """The reference server's own lateness since the last call (and reset it)."""
    root = server.url.removesuffix("/v1")
    data: dict[str, float] = httpx.get(f"{root}/stats?reset=1", timeout=5).json()
    return data
