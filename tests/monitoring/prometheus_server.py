"""Debian's Prometheus, run with chatstack's prometheus.yml pointed at the test's servers, and queried."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from tests.monitoring.dashboards import MONITORING
from tests.support.processes import ServerProcess, free_port, start_process

SCRAPE_INTERVAL = "1s"


def config_for_test(targets: Mapping[str, str]) -> dict[str, Any]:
    """monitoring/prometheus/prometheus.yml with every scrape each second and the jobs' targets moved.

    Jobs not in `targets` point at a closed port: they stay configured and show as down.
    """
    config: dict[str, Any] = yaml.safe_load((MONITORING / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=SCRAPE_INTERVAL, scrape_timeout=SCRAPE_INTERVAL)
    for job in config["scrape_configs"]:
        url = targets.get(job["job_name"], f"http://127.0.0.1:{free_port()}")
        for static in job["static_configs"]:
            static["targets"] = [urlsplit(url).netloc]
    return config


@dataclass
class PrometheusServer:
    process: ServerProcess
    url: str

    def query(self, expr: str) -> dict[str, Any]:
        """The instant query's whole answer (`status`, `data` or `error`)."""
        response = httpx.post(f"{self.url}/api/v1/query", data={"query": expr}, timeout=10)
        answer: dict[str, Any] = response.json()
        return answer

    def vector(self, expr: str) -> list[dict[str, Any]]:
        answer = self.query(expr)
        assert answer["status"] == "success", (expr, answer)
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_for(self, expr: str, timeout: float = 60) -> list[dict[str, Any]]:
        """Poll until `expr` has a result."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.vector(expr)
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"{expr} had no result within {timeout}s")


def start_prometheus(targets: Mapping[str, str], workdir: Path, log_dir: Path) -> PrometheusServer:
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config_for_test(targets)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_process(
        [
            "prometheus",
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        health_url=f"{url}/-/ready",
        base_url=url,
        env={},
        log_path=log_dir / f"prometheus-{port}.log",
    )
    return PrometheusServer(process, url)
