"""Fixtures of the embedded model's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.local.fake_engine import install_fake_engine


@pytest.fixture
def fake_engine(tmp_path: Path) -> Path:
    """A folder to put on the engine's PYTHONPATH, where `vllm.entrypoints.openai.api_server` is a fake."""
    return install_fake_engine(tmp_path / "fake")
