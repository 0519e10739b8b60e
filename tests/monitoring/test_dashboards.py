"""The Grafana dashboards and provisioning, and the Prometheus config: every metric a dashboard queries is
one that chatstack, vLLM 0.32 or Ray Serve really exports."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from tests.monitoring.dashboards import (
    DASHBOARDS,
    MONITORING,
    chatstack_families,
    known_series,
    load_dashboards,
    metric_names,
    panels,
    queries,
    query_metric_names,
)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        (
            'sum by (route) (rate(chatstack_http_requests_total{i=~"$i",status=~"5.."}[$__rate_interval]))',
            {"chatstack_http_requests_total"},
        ),
        (
            "histogram_quantile(0.9, sum by (le, m) (rate(vllm:time_to_first_token_seconds_bucket[5m])))",
            {"vllm:time_to_first_token_seconds_bucket"},
        ),
        ("sum(rate(a_total[1m])) / ignoring(job) sum(rate(b_total[1m])) > bool 0.5", {"a_total", "b_total"}),
        ('max(x{le="+Inf", path="/by (route)"}) offset 5m unless on (instance) y', {"x", "y"}),
        ('label_replace(m, "dst", "$1", "src", "(.*)")', {"m"}),
    ],
)
def test_metric_names_of_a_query(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_dashboards_are_there() -> None:
    assert set(load_dashboards()) == {"chatstack.json", "model-serving.json"}


def test_every_queried_metric_is_exported() -> None:
    known = known_series()
    unknown = []
    for name, dashboard in load_dashboards().items():
        for query in queries(name, dashboard):
            names = query_metric_names(query)
            assert names, f"{query} selects no metric"
            unknown += [f"{query.dashboard} / {query.panel}: {n}" for n in sorted(names - known.keys())]
    assert unknown == [], "queried but exported by neither chatstack, vLLM 0.32 nor Ray Serve 2.60"


def test_dashboards_cover_what_was_asked() -> None:
    used = {
        name: {n for q in queries(name, board) for n in query_metric_names(q)}
        for name, board in load_dashboards().items()
    }
    # Every chatstack metric has a panel: a new metric in app/metrics.py needs one in chatstack.json.
    for family, kind in chatstack_families().items():
        prefix = family if kind != "histogram" else f"{family}_"
        assert any(n.startswith(prefix) for n in used["chatstack.json"]), f"no panel shows {family}"
    serving = used["model-serving.json"]
    for needed in (
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:kv_cache_usage_perc",
        "vllm:num_requests_waiting",
        "ray_serve_num_http_requests_total",
        "ray_serve_deployment_processing_latency_ms_bucket",
        "ray_vllm_time_to_first_token_seconds_bucket",
    ):
        assert needed in serving
    assert not any("gpu_cache_usage_perc" in n for n in serving), "removed from vLLM: use kv_cache_usage_perc"


def test_panels_are_laid_out_and_use_the_datasource_variable() -> None:
    for name, dashboard in load_dashboards().items():
        ids = [p["id"] for p in panels(dashboard)]
        assert len(ids) == len(set(ids)), name
        occupied: set[tuple[int, int]] = set()
        for panel in panels(dashboard):
            pos = panel["gridPos"]
            assert pos["x"] >= 0, (name, panel["title"])
            assert pos["x"] + pos["w"] <= 24, (name, panel["title"])
            cells = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
            assert not cells & occupied, f"{name}: {panel['title']} overlaps another panel"
            occupied |= cells
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), (name, panel["title"])


def load_yaml(relative: str) -> Any:
    return yaml.safe_load((MONITORING / relative).read_text())


def test_grafana_provisioning_points_at_the_datasource_and_dashboards() -> None:
    sources = load_yaml("grafana/provisioning/datasources/prometheus.yaml")
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    for dashboard in load_dashboards().values():
        variable = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
        assert variable["current"]["value"] == source["uid"]
    providers = load_yaml("grafana/provisioning/dashboards/chatstack.yaml")
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].endswith("/dashboards/chatstack")
    assert sorted(DASHBOARDS.glob("*.json"))


def test_prometheus_scrapes_chatstack_vllm_ray_and_the_emulator() -> None:
    config = load_yaml("prometheus/prometheus.yml")
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {
        "chatstack": ["127.0.0.1:8000"],
        "vllm": ["127.0.0.1:8001"],
        "ray": ["127.0.0.1:8080"],
        "emulator": ["127.0.0.1:8300"],
    }
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in config["scrape_configs"])


@pytest.mark.slow
def test_promtool_accepts_the_prometheus_config() -> None:
    # Debian's prometheus package (CI installs it) brings promtool.
    result = subprocess.run(
        ["promtool", "check", "config", str(MONITORING / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
