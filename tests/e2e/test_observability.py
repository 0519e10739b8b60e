"""Prometheus metrics with bounded labels, request ids, and JSON logs that name the request and run."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.processes import ServerProcess
from tests.support.sse import ask, new_conversation

pytestmark = pytest.mark.slow


def metric_value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_use_route_templates_and_count_runs(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    await client.get(f"/api/conversations/{cid}")
    await ask(client, cid, "calc: 2+2")
    await ask(client, cid, "hi", backend="offline")
    text = (await client.get("/metrics")).text

    route = "/api/conversations/{conversation_id}"
    assert metric_value(text, "chatstack_http_requests_total", method="GET", route=route, status="200") >= 1
    assert cid not in text, "raw ids must never become label values"
    assert metric_value(text, "chatstack_runs_total", backend="scripted", outcome="completed") >= 1
    assert metric_value(text, "chatstack_runs_total", backend="offline", outcome="failed") >= 1
    assert metric_value(text, "chatstack_backend_errors_total", backend="offline", kind="unavailable") >= 1
    assert metric_value(text, "chatstack_tool_duration_seconds_count", tool="calculator") >= 1
    assert metric_value(text, "chatstack_run_ttft_seconds_count", backend="scripted") >= 1
    assert metric_value(text, "chatstack_run_tool_calls_sum", backend="scripted") >= 1
    assert metric_value(text, "chatstack_db_query_duration_seconds_count", operation="insert") >= 1
    assert metric_value(text, "chatstack_backend_up", backend="scripted") == 1
    assert "chatstack_active_streams" in text


async def test_unmatched_paths_share_one_label(client: httpx.AsyncClient) -> None:
    for i in range(3):
        assert (await client.get(f"/no/such/path/{i}")).status_code == 404
    text = (await client.get("/metrics")).text
    assert metric_value(text, "chatstack_http_requests_total", route="<unmatched>", status="404") >= 3
    assert "/no/such/path" not in text


async def test_request_id_is_echoed_and_logged(client: httpx.AsyncClient, chatstack: ServerProcess) -> None:
    response = await client.get("/api/conversations", headers={"X-Request-ID": "trace-abc-123"})
    assert response.headers["x-request-id"] == "trace-abc-123"
    generated = (await client.get("/api/backends")).headers["x-request-id"]
    assert len(generated) == 32
    # Hostile ids are replaced, not echoed.
    bad = await client.get("/api/backends", headers={"X-Request-ID": "a b\tc" * 30})
    assert bad.headers["x-request-id"] != "a b\tc" * 30

    cid = await new_conversation(client)
    events = await ask(client, cid, "calc: 1+1", backend="scripted")
    run_id = events[0].data["run_id"]
    await ask(client, cid, "x", backend="offline")

    lines = [json.loads(line) for line in chatstack.log().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("request_id") == "trace-abc-123"]
    assert access, "the access log line carries the request id"
    assert access[0]["route"] == "/api/conversations"
    assert access[0]["status"] == 200
    run_lines = [line for line in lines if line.get("run_id")]
    assert run_lines, "a run's log lines carry its run id"
    failed = [line for line in run_lines if "unavailable" in line["msg"] or "reach" in line["msg"]]
    assert failed
    assert all(line["request_id"] for line in failed), "a run's lines also carry the request that started it"
    assert run_id not in [line.get("run_id") for line in failed]
