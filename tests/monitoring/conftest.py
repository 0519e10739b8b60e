"""Fixtures for the live monitoring test: chatstack with a GPU-deployment emulator as one of its backends,
and Debian's Prometheus scraping both with monitoring/prometheus/prometheus.yml (targets moved to the
test's ports)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.monitoring.prometheus_server import PrometheusServer, start_prometheus
from tests.support.processes import ServerProcess, free_port, start_process

EMULATED_MODEL = "qwen2.5-7b-instruct"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only: the metrics and dashboards are the same on either database."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'chatstack.db'}"


@pytest.fixture(scope="module")
def monitoring_output(output_dir: Path) -> Path:
    path = output_dir / "monitoring"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def emulator(log_dir: Path) -> Iterator[ServerProcess]:
    """`chatstack emulate` (the qwen A10G profile, 20x faster): vLLM's /metrics without a GPU."""
    port = free_port()
    server = start_process(
        [
            sys.executable, "-m", "backends.emulator",
            "--profile", "qwen-a10g", "--port", str(port), "--time-scale", "0.05",
        ],
        health_url=f"http://127.0.0.1:{port}/health",
        base_url=f"http://127.0.0.1:{port}",
        env={},
        log_path=log_dir / f"emulator-{port}.log",
    )  # fmt: skip
    yield server
    server.stop()


@pytest.fixture(scope="module")
def chatstack_env(chatstack_env: dict[str, str], emulator: ServerProcess) -> dict[str, str]:
    """The usual test backends plus the emulator, so answers also flow chatstack -> emulated vLLM."""
    backends_file = Path(chatstack_env["CHATSTACK_BACKENDS_FILE"])
    config = yaml.safe_load(backends_file.read_text())
    config["backends"].append(
        {"name": "emulated", "base_url": f"{emulator.url}/v1", "model": EMULATED_MODEL, "tool_mode": "none"}
    )
    extended = backends_file.with_name("backends-with-emulator.yaml")
    extended.write_text(yaml.safe_dump(config))
    return {**chatstack_env, "CHATSTACK_BACKENDS_FILE": str(extended)}


@pytest.fixture(scope="module")
def prometheus(
    chatstack: ServerProcess, emulator: ServerProcess, tmp_path_factory: pytest.TempPathFactory, log_dir: Path
) -> Iterator[PrometheusServer]:
    assert shutil.which("prometheus"), "needs Debian's prometheus: apt-get install prometheus"
    server = start_prometheus(
        {"chatstack": chatstack.url, "emulator": emulator.url},
        tmp_path_factory.mktemp("prometheus"),
        log_dir,
    )
    yield server
    server.process.stop()
