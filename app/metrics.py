"""Prometheus metrics of one chatstack process, in a registry owned by the app (not a global one).

Labels are bounded: route templates (never raw paths), backend and tool names from configuration,
and small fixed sets of outcomes and error kinds.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
COUNT_BUCKETS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "chatstack_http_requests",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "chatstack_http_request_duration_seconds",
            "Time to the end of the response (streams: the whole stream).",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.runs = Counter(
            "chatstack_runs", "Agent runs by backend and outcome.", ["backend", "outcome"], registry=r
        )
        self.run_ttft = Histogram(
            "chatstack_run_ttft_seconds",
            "Run start to first answer token.",
            ["backend"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.run_duration = Histogram(
            "chatstack_run_duration_seconds",
            "Run start to end.",
            ["backend"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.run_llm_calls = Histogram(
            "chatstack_run_llm_calls", "Model calls per run.", ["backend"], buckets=COUNT_BUCKETS, registry=r
        )
        self.run_tool_calls = Histogram(
            "chatstack_run_tool_calls", "Tool calls per run.", ["backend"], buckets=COUNT_BUCKETS, registry=r
        )
        self.tool_duration = Histogram(
            "chatstack_tool_duration_seconds",
            "Tool call latency.",
            ["tool"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tool_errors = Counter(
            "chatstack_tool_errors", "Tool calls that returned an error.", ["tool"], registry=r
        )
        self.backend_errors = Counter(
            "chatstack_backend_errors",
            "Backend failures by backend and kind.",
            ["backend", "kind"],
            registry=r,
        )
        self.backend_up = Gauge(
            "chatstack_backend_up", "1 if the last health check succeeded.", ["backend"], registry=r
        )
        self.active_runs = Gauge("chatstack_active_runs", "Runs executing in this process.", registry=r)
        self.active_streams = Gauge(
            "chatstack_active_streams", "Open event streams (SSE and OpenAI-compatible).", registry=r
        )
        self.db_duration = Histogram(
            "chatstack_db_query_duration_seconds",
            "Database statement latency by kind.",
            ["operation"],
            buckets=DB_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def sql_operation(statement: str) -> str:
    """The statement's kind (select, insert, ...) as a bounded label."""
    word = statement.lstrip().split(None, 1)[0].lower() if statement.strip() else "other"
    return word if word in {"select", "insert", "update", "delete", "begin", "commit", "pragma"} else "other"


def observe_queries(engine: AsyncEngine, metrics: Metrics) -> None:
    """Time every statement the engine runs into `chatstack_db_query_duration_seconds`."""

    def before(conn: Any, _cursor: Any, _statement: str, *_: Any) -> None:
        conn.info.setdefault("query_started", []).append(time.perf_counter())

    def after(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        started = conn.info["query_started"].pop()
        metrics.db_duration.labels(sql_operation(statement)).observe(time.perf_counter() - started)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
