"""The agent's tools, built from settings and the tools file, and the worker processes that run their
CPU-bound work."""

from __future__ import annotations

from app.errors import InvalidRequest
from app.settings import Settings
from tools.base import Tool
from tools.calculator import WORKER_MODULES, Calculator
from tools.catalog import ToolCatalog
from tools.mcp.catalog import LiveToolCatalog
from tools.tools_file import ToolsFile
from tools.web_search import WebSearch, build_search_provider
from tools.worker_pool import WorkerPool

TOOL_WORKERS = 2
"""Warm worker processes. Two, so that while one is being killed and replaced (a call past its
deadline) the other still serves; each costs an idle interpreter (about 45 MB)."""

MAX_WAITING_TOOL_CALLS = 32
"""Calls that may wait for a free worker; one more is refused at once with a tool error."""

TOOL_WORKER_MEMORY_MIB = 256
"""Memory a worker may use beyond its idle interpreter; the calculator's bounds need a few MB."""

CALCULATOR_DEADLINE_S = 5.0
"""One evaluation's hard deadline (bounded evaluations take milliseconds)."""


def build_tool_pool() -> WorkerPool:
    """The app's worker pool: started and closed by the lifespan, shared by every run."""
    return WorkerPool(
        WORKER_MODULES,
        size=TOOL_WORKERS,
        max_waiting=MAX_WAITING_TOOL_CALLS,
        memory_mib=TOOL_WORKER_MEMORY_MIB,
    )


def build_tools(settings: Settings, pool: WorkerPool) -> dict[str, Tool]:
    provider = build_search_provider(
        settings.search_provider,
        searxng_url=settings.searxng_url,
        duckduckgo_url=settings.duckduckgo_url,
        timeout_s=settings.search_timeout_s,
    )
    # The whole search, retries included, must end before the agent's own tool timeout; so must a
    # calculation, waiting for a free worker included.
    within_tool_timeout = settings.tool_timeout_s * 0.9
    search = WebSearch(provider, timeout_s=min(settings.search_timeout_s * 2.5, within_tool_timeout))
    calculator = Calculator(
        pool,
        timeout_s=within_tool_timeout,
        evaluation_timeout_s=min(CALCULATOR_DEADLINE_S, within_tool_timeout),
    )
    tools: list[Tool] = [calculator, search]
    return {t.name: t for t in tools}


def build_catalog(settings: Settings, pool: WorkerPool, tools_file: ToolsFile) -> LiveToolCatalog:
    """Every tool: the built-ins and the tools file's MCP servers (whose sessions the lifespan starts
    and closes). A stdio server's stderr goes to `<data_dir>/logs/mcp-<name>.log`."""
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return LiveToolCatalog(tools_file, build_tools(settings, pool), stderr_dir=logs)


def require_known_tools(catalog: ToolCatalog, selection: list[str] | None) -> None:
    """Refuse (422) a tool selection naming a tool the catalog does not have (unavailable ones count:
    their server may be restarting)."""
    if not selection:
        return
    known = {entry.name for entry in catalog.entries()}
    unknown = sorted(set(selection) - known)
    if unknown:
        listed = ", ".join(sorted(known)[:50]) or "none"
        raise InvalidRequest(
            f"unknown tool(s) {', '.join(map(repr, unknown[:10]))}; GET /api/tools lists them ({listed})",
            code="unknown_tool",
        )
