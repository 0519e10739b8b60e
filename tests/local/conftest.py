"""Fixtures of the embedded model's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local.embedded_stack import running_engine
from tests.local.fake_engine import install_fake_engine
from tests.support.processes import ServerProcess


@pytest.fixture
def fake_engine(tmp_path: Path) -> Path:
    """A folder to put on the engine's PYTHONPATH, where `vllm.entrypoints.openai.api_server` is a fake."""
    return install_fake_engine(tmp_path / "fake")


@pytest.fixture(scope="module")
def engine(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real engine (tests/local/embedded_stack.py), one per module that asks for it."""
    with running_engine(log_dir, tmp_path_factory.mktemp("engine")) as server:
        yield server
