"""The dashboards' queries against real data: Debian's Prometheus scrapes a running chatstack and the
GPU-deployment emulator (vLLM's metrics) after some traffic, and answers every panel's query.

Grafana is not packaged for Debian (nor on PyPI), so it does not run here; Prometheus's own graph page
shows a few of the dashboards' queries in Chromium instead (test-output/monitoring/*.png).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser

from tests.monitoring.conftest import EMULATED_MODEL
from tests.monitoring.dashboards import Query, load_dashboards, queries, query_metric_names
from tests.monitoring.prometheus_server import PrometheusServer
from tests.support.processes import CHROMIUM, ServerProcess, chromium
from tests.support.sse import ask, new_conversation

pytestmark = pytest.mark.slow

VARIABLES = {"__rate_interval": "1m", "instance": ".*", "backend": ".*", "model": ".*"}


def instant(expr: str) -> str:
    """A panel's query as Grafana would send it with every variable at "All"."""
    return re.sub(r"\$(\w+)", lambda m: VARIABLES[m.group(1)], expr)


async def send_traffic(chatstack: str, emulator: str) -> None:
    """Answers of every kind: plain, with tools, a failing tool, a failing backend, and via the emulator."""
    async with httpx.AsyncClient(base_url=chatstack, timeout=60) as client:
        cid = await new_conversation(client)
        for content in ("tokens: 20", "calc: 6*7", "search: chatstack metrics", "calc: 1/0"):
            assert (await ask(client, cid, content))[-1].type == "run.finished"
        await ask(client, await new_conversation(client, backend="offline"), "anyone there?")
        await ask(client, await new_conversation(client, backend="emulated"), "hello emulated GPU")
        assert (await client.get("/api/conversations/no-such-id")).status_code == 404
        offline = {"model": "offline", "messages": [{"role": "user", "content": "hi"}]}
        assert (await client.post("/v1/chat/completions", json=offline)).status_code == 502
        emulated = {"model": "emulated", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 32}
        assert (await client.post("/v1/chat/completions", json=emulated)).status_code == 200
    async with httpx.AsyncClient(base_url=emulator, timeout=60) as engine:
        body = {"model": EMULATED_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}
        for _ in range(3):
            assert (await engine.post("/v1/chat/completions", json=body)).status_code == 200


@pytest.fixture(scope="module")
def scraped(
    prometheus: PrometheusServer, chatstack: ServerProcess, emulator: ServerProcess
) -> PrometheusServer:
    """Prometheus after two rounds of traffic a few scrapes apart (rates need two samples)."""
    asyncio.run(send_traffic(chatstack.url, emulator.url))
    prometheus.wait_for('chatstack_runs_total{outcome="failed"}')
    prometheus.wait_for("vllm:time_to_first_token_seconds_count")
    time.sleep(3)
    asyncio.run(send_traffic(chatstack.url, emulator.url))
    time.sleep(4)
    return prometheus


def emulator_exports(emulator: ServerProcess) -> set[str]:
    text = httpx.get(f"{emulator.url}/metrics", timeout=10).text
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")
    }


def test_every_dashboard_query_runs_and_chatstack_and_vllm_ones_have_data(
    scraped: PrometheusServer, emulator: ServerProcess, output_dir: Path
) -> None:
    up = {r["metric"]["job"]: r["value"][1] for r in scraped.vector("up")}
    assert up["chatstack"] == "1"
    assert up["emulator"] == "1"
    engine_series = emulator_exports(emulator)
    answers: dict[str, Any] = {}
    empty: list[Query] = []
    for name, dashboard in load_dashboards().items():
        for query in queries(name, dashboard):
            names = query_metric_names(query)
            if query.panel.startswith("variable"):
                (metric,) = names
                label = query.expr.rsplit(",", 1)[1].strip(" )")
                values = httpx.get(
                    f"{scraped.url}/api/v1/label/{label}/values", params={"match[]": metric}, timeout=10
                ).json()
                answers[f"{name} / {query.panel}"] = values["data"]
                if not metric.startswith("ray_"):
                    assert values["data"], query
                continue
            answer = scraped.query(instant(query.expr))
            assert answer["status"] == "success", (query, answer)  # valid PromQL for Prometheus itself
            result = answer["data"]["result"]
            answers[f"{name} / {query.panel} / {query.expr}"] = result
            served_here = all(n.startswith("chatstack_") or n in engine_series for n in names)
            if served_here and not result:
                empty.append(query)
    (output_dir / "monitoring").mkdir(exist_ok=True)
    (output_dir / "monitoring" / "dashboard-queries.json").write_text(json.dumps(answers, indent=1))
    # Every panel over chatstack or the (emulated) vLLM engine shows data; Ray Serve is not running here.
    assert empty == []


def value(scraped: PrometheusServer, expr: str, **labels: str) -> float:
    for series in scraped.vector(instant(expr)):
        if all(series["metric"].get(k) == v for k, v in labels.items()):
            return float(series["value"][1])
    raise AssertionError(f"no series {labels} in {expr}")


def panel_expr(dashboard: str, title: str, ref: int = 0) -> str:
    board = load_dashboards()[dashboard]
    panel = next(p for p in board["panels"] if p["title"] == title)
    return str(panel["targets"][ref]["expr"])


def test_panels_show_plausible_numbers(scraped: PrometheusServer) -> None:
    ttft = value(scraped, panel_expr("chatstack.json", "Time to first token", 1), backend="scripted")
    assert 0 < ttft < 5
    outcomes = {
        s["metric"]["outcome"]
        for s in scraped.vector(instant(panel_expr("chatstack.json", "Runs per second by outcome")))
    }
    assert {"completed", "failed"} <= outcomes
    assert value(scraped, panel_expr("chatstack.json", "Tool errors per second"), tool="calculator") > 0
    assert value(scraped, panel_expr("chatstack.json", "Failed runs by backend"), backend="offline") == 1
    engine_ttft = value(
        scraped, panel_expr("model-serving.json", "Time to first token", 1), model_name=EMULATED_MODEL
    )
    assert 0 < engine_ttft < 60
    assert (
        value(scraped, panel_expr("model-serving.json", "Tokens per second", 1), model_name=EMULATED_MODEL)
        > 0
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "needs Debian's chromium: apt-get install chromium"
    with chromium() as launched:
        yield launched


def test_prometheus_graphs_the_dashboard_queries(
    scraped: PrometheusServer, browser: Browser, output_dir: Path
) -> None:
    shown = [
        ("chatstack.json", "Runs per second by outcome"),
        ("chatstack.json", "Time to first token"),
        ("model-serving.json", "Time to first token"),
        ("model-serving.json", "Tokens per second"),
    ]
    params: dict[str, str] = {}
    for i, (board, title) in enumerate(shown):
        params |= {f"g{i}.expr": instant(panel_expr(board, title, 1 if "first token" in title else 0))}
        params |= {f"g{i}.tab": "0", f"g{i}.range_input": "1m"}
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    try:
        page.goto(f"{scraped.url}/classic/graph?{urllib.parse.urlencode(params)}")
        graphs = page.locator(".graph_area svg path.path")
        graphs.first.wait_for(timeout=30_000)
        page.wait_for_timeout(1000)
        # One plotted line at least per graph: each query drew real data.
        assert page.locator(".graph_area svg path.path").count() >= len(shown)
        assert page.locator(".graph_area").count() == len(shown)
        page.screenshot(
            path=str(output_dir / "monitoring" / "prometheus-dashboard-queries.png"), full_page=True
        )
    finally:
        page.close()
