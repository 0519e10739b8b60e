"""Start real emulator processes for the end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.processes import ServerProcess

StartEmulator = Callable[[str, float], ServerProcess]


@pytest.fixture
def start_emulator(log_dir: Path) -> Iterator[StartEmulator]:
    """`start(profile, time_scale)` runs `python -m backends.emulator` on a free port until the test ends."""
    started: list[ServerProcess] = []

    def start(profile: str, time_scale: float) -> ServerProcess:
        server = processes.start_emulator(log_dir, profile, time_scale)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
