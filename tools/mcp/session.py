"""One MCP server: a single long-lived session, kept alive by its own task.

The task connects (stdio: starts the server's process once; streamable HTTP: opens the session), lists
the tools, then watches the connection: a tool list change refreshes the listing; a lost connection (the
process exited, the HTTP server stopped answering) marks the server unavailable, with the reason, and
the task reconnects with exponential backoff. Calls from runs share the session; none starts a process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from tools.mcp.errors import McpCallFailed, McpCallTimeout, McpConnectionLost, McpUnavailable
from tools.tools_file import McpServerConfig

log = logging.getLogger(__name__)

Status = Literal["connecting", "available", "unavailable"]

BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
"""What every stdio server gets besides the names its entry lists: PATH to find its interpreter (node,
uvx, python), HOME for its caches (npm, uv), the locale for text and TMPDIR for scratch files. None is
a secret. (The SDK adds USER, LOGNAME, SHELL and TERM, also harmless.) Everything else of chatstack's
environment (API keys, the database URL) stays out unless the entry names it."""

MAX_TOOLS_PER_SERVER = 256
MAX_LIST_PAGES = 20
WATCH_INTERVAL_S = 0.5
"""How often the session checks that the connection is still open (a stdio server that exits)."""
PROBE_INTERVAL_S = 30.0
"""How often an idle session lists the tools again: it notices a stopped HTTP server, and new tools of
a server that does not announce changes."""
STABLE_AFTER_S = 30.0
"""A connection that lasted this long resets the backoff."""


def server_environment(names: list[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a stdio server starts with: `BASE_ENV` and the names its entry lists."""
    return {name: environ[name] for name in (*BASE_ENV, *names) if name in environ}


def server_headers(headers_from_env: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """HTTP headers from chatstack's environment; a variable that is not set leaves its header out."""
    return {header: environ[var] for header, var in headers_from_env.items() if var in environ}


@dataclass(slots=True)
class ServerState:
    status: Status = "connecting"
    reason: str | None = "connecting"
    tools: list[types.Tool] = field(default_factory=list)
    """The latest listing; kept while the server is down, so its tools can be shown as unavailable."""


class McpServerSession:
    """The connection to one configured MCP server; `start` it once, `close` it at shutdown."""

    def __init__(
        self,
        config: McpServerConfig,
        *,
        environ: Mapping[str, str] | None = None,
        on_change: Callable[[], None] = lambda: None,
        backoff_first_s: float = 0.5,
        backoff_max_s: float = 30.0,
        probe_interval_s: float = PROBE_INTERVAL_S,
        stderr_path: str | None = None,
    ) -> None:
        self.config = config
        self.state = ServerState()
        self._environ = dict(os.environ if environ is None else environ)
        self._on_change = on_change
        self._backoff_first_s = backoff_first_s
        self._backoff_max_s = backoff_max_s
        self._probe_interval_s = probe_interval_s
        self._stderr_path = stderr_path
        self._client: Client | None = None
        self._lost = asyncio.Event()
        self._refresh_wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random()
        self.restarts = 0
        """Connections opened after the first (for tests and the log)."""

    @property
    def name(self) -> str:
        return self.config.name

    def start(self) -> None:
        """Connect in the background: returns at once, the tools appear once the server answers."""
        if self._task is None:
            self._task = asyncio.create_task(self._run_forever(), name=f"mcp-{self.name}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def call(self, tool: str, arguments: dict[str, Any], timeout_s: float) -> types.CallToolResult:
        """Call `tool` on the open session.

        Raises McpUnavailable (not connected), McpCallTimeout, McpConnectionLost (the server went away
        during the call; the session restarts it) or McpCallFailed (the server answered with an error)."""
        client = self._client
        if client is None or self.state.status != "available":
            raise McpUnavailable(self.state.reason or "not connected")
        try:
            async with asyncio.timeout(timeout_s):
                return await client.call_tool(tool, arguments)
        except TimeoutError:
            raise McpCallTimeout(f"no answer within {timeout_s:g} s") from None
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                self._connection_lost("the server stopped during a call")
                raise McpConnectionLost("the server stopped during the call") from exc
            raise McpCallFailed(f"the server refused the call: {exc}") from exc
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError, httpx2.HTTPError) as exc:
            self._connection_lost(f"connection lost: {type(exc).__name__}")
            raise McpConnectionLost(f"the connection to the server was lost ({type(exc).__name__})") from exc
        except Exception as exc:  # a result that fails the tool's own output schema, among others
            raise McpCallFailed(f"{type(exc).__name__}: {exc}") from exc

    # the owner task

    async def _run_forever(self) -> None:
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await self._serve_once()
                reason = "the server closed the connection"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure to start or to talk: shown, then retried
                reason = _describe(exc)
            finally:
                self._client = None
            if time.monotonic() - started >= STABLE_AFTER_S:
                failures = 0
            delay = self._backoff(failures)
            failures += 1
            self._set(status="unavailable", reason=f"{reason}; retrying in {delay:.1f} s")
            log.warning("MCP server %s is unavailable (%s); retrying in %.1f s", self.name, reason, delay)
            await asyncio.sleep(delay)
            self.restarts += 1
            self._set(status="connecting", reason=f"{reason}; reconnecting")

    def _backoff(self, failures: int) -> float:
        ceiling = min(self._backoff_max_s, self._backoff_first_s * 2.0**failures)
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    async def _serve_once(self) -> None:
        self._lost = asyncio.Event()
        connect_timeout = max(self.config.timeout_s, 10.0)
        async with AsyncExitStack() as stack:
            client = Client(
                await self._transport(stack),
                mode="auto",
                message_handler=self._on_message,
                cache=None,  # listings must be fresh after a change
                client_info=types.Implementation(name="chatstack", version="0.1.0"),
            )
            async with asyncio.timeout(connect_timeout):
                await stack.enter_async_context(client)
                await self._list_tools(client)
            self._client = client
            self._set(status="available", reason=None)
            log.info("MCP server %s connected (%d tool(s))", self.name, len(self.state.tools))
            async with anyio.create_task_group() as group:
                if self._announces_changes(client) and client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                    group.start_soon(self._listen, client)
                group.start_soon(self._refresh_on_request, client)
                await self._watch(client)
                group.cancel_scope.cancel()

    async def _transport(self, stack: AsyncExitStack) -> Any:
        config = self.config
        if config.command is not None:
            errlog = stack.enter_context(await asyncio.to_thread(_open_log, self._stderr_path or os.devnull))
            params = StdioServerParameters(
                command=config.command,
                args=config.args,
                env=server_environment(config.env, self._environ),
            )
            return stdio_client(params, errlog=errlog)
        assert config.url is not None
        http = await stack.enter_async_context(
            httpx2.AsyncClient(
                headers=server_headers(config.headers_from_env, self._environ),
                timeout=httpx2.Timeout(30.0, read=300.0),
            )
        )
        return streamable_http_client(config.url, http_client=http)

    @staticmethod
    def _announces_changes(client: Client) -> bool:
        tools = client.server_capabilities.tools
        return bool(tools and tools.list_changed)

    async def _watch(self, client: Client) -> None:
        """Return once the connection is lost."""
        last_probe = time.monotonic()
        while not self._lost.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), WATCH_INTERVAL_S)
            if _dispatcher_closed(client):
                raise McpConnectionLost(
                    "the server exited" if self.config.command else "the connection ended"
                )
            if time.monotonic() - last_probe >= self._probe_interval_s:
                last_probe = time.monotonic()
                async with asyncio.timeout(self.config.timeout_s):
                    await self._list_tools(client)
        raise McpConnectionLost(self._lost_reason)

    async def _listen(self, client: Client) -> None:
        """2026-07-28 servers announce tool changes on a `subscriptions/listen` stream."""
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _event in subscription:
                    self._refresh_wanted.set()
        except (ListenNotSupportedError, SubscriptionLost, MCPError) as exc:
            log.info("MCP server %s: no tool change notifications (%s)", self.name, exc)

    async def _on_message(self, message: types.ServerNotification | Exception) -> None:
        """Earlier protocol versions send `notifications/tools/list_changed` on the session itself."""
        if isinstance(message, types.ToolListChangedNotification):
            self._refresh_wanted.set()

    async def _refresh_on_request(self, client: Client) -> None:
        while True:
            await self._refresh_wanted.wait()
            self._refresh_wanted.clear()
            try:
                async with asyncio.timeout(self.config.timeout_s):
                    await self._list_tools(client)
            except Exception as exc:
                self._connection_lost(f"listing the tools failed: {_describe(exc)}")
                return
            log.info("MCP server %s changed its tools (%d now)", self.name, len(self.state.tools))

    async def _list_tools(self, client: Client) -> None:
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None or len(tools) >= MAX_TOOLS_PER_SERVER:
                break
        if len(tools) > MAX_TOOLS_PER_SERVER:
            log.warning(
                "MCP server %s lists %d tools; keeping the first %d", self.name, len(tools), len(tools[:256])
            )
        self.state.tools = tools[:MAX_TOOLS_PER_SERVER]
        self._on_change()

    _lost_reason = "the connection was lost"

    def _connection_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            self._lost_reason = reason
            self._set(status="unavailable", reason=reason)
            self._lost.set()

    def _set(self, *, status: Status, reason: str | None) -> None:
        self.state.status = status
        self.state.reason = reason
        self._on_change()


def _open_log(path: str) -> TextIO:
    """Where a stdio server's stderr goes (its own file: it is not chatstack's log)."""
    return open(path, "a", encoding="utf-8")  # closed by the session's exit stack


def _dispatcher_closed(client: Client) -> bool:
    """Whether the session's connection ended (a stdio server's output closed when it exited).

    The SDK keeps this on its dispatcher and has no public accessor; without it a dead idle server is
    noticed only by the next probe or call."""
    try:
        dispatcher = client.session._dispatcher
    except RuntimeError:
        return True
    return bool(getattr(dispatcher, "_closed", False))


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]  # anyio's task groups wrap what their tasks raised
    if isinstance(exc, TimeoutError):
        return "the server did not answer in time"
    if isinstance(exc, FileNotFoundError):
        return f"cannot start the server: {exc.strerror}: {exc.filename}"
    if isinstance(exc, McpConnectionLost):
        return str(exc)
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message[:300]}" if message else type(exc).__name__
