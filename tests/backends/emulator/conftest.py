"""Start real emulator processes for the end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.processes import BIN, ServerProcess, free_port, start_process

StartEmulator = Callable[[str, float], ServerProcess]


@pytest.fixture
def start_emulator(log_dir: Path) -> Iterator[StartEmulator]:
    """`start(profile, time_scale)` runs `python -m backends.emulator` on a free port until the test ends."""
    started: list[ServerProcess] = []

    def start(profile: str, time_scale: float) -> ServerProcess:
        port = free_port()
        server = start_process(
            [
                str(BIN / "python"),
                "-m",
                "backends.emulator",
                "--profile",
                profile,
                "--port",
                str(port),
                "--time-scale",
                str(time_scale),
            ],
            health_url=f"http://127.0.0.1:{port}/health",
            base_url=f"http://127.0.0.1:{port}/v1",
            env={},
            log_path=log_dir / f"emulator-{profile}-{port}.log",
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
