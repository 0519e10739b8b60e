"""The live tool catalog: the built-in tools and every configured MCP server's tools, with their
approval policy from the tools file and whether they can be called now."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from tools.base import Tool
from tools.catalog import BUILTIN_SERVER, ToolEntry
from tools.mcp.adapter import McpTool
from tools.mcp.names import assign_names
from tools.mcp.session import McpServerSession
from tools.tools_file import ToolsFile

log = logging.getLogger(__name__)


class LiveToolCatalog:
    """Implements `tools.catalog.ToolCatalog`. `start` connects to the MCP servers in the background (it
    never waits for them), `close` ends their sessions; in between, `entries` follows their state."""

    def __init__(
        self,
        tools_file: ToolsFile,
        builtin: Mapping[str, Tool],
        *,
        environ: Mapping[str, str] | None = None,
        stderr_dir: Path | None = None,
        backoff_first_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self._file = tools_file
        self._builtin = [
            ToolEntry(tool, BUILTIN_SERVER, tools_file.builtin_config(name).approval)
            for name, tool in builtin.items()
            if tools_file.builtin_config(name).enabled
        ]
        environ = dict(os.environ if environ is None else environ)
        self.sessions: list[McpServerSession] = [
            McpServerSession(
                config,
                environ=environ,
                on_change=self._changed,
                backoff_first_s=backoff_first_s,
                backoff_max_s=backoff_max_s,
                stderr_path=str(stderr_dir / f"mcp-{config.name}.log") if stderr_dir else None,
            )
            for config in tools_file.mcp_servers
            if config.enabled
        ]
        self._version = 0
        self._built_version = -1
        self._entries: list[ToolEntry] = list(self._builtin)
        self._by_name: dict[str, ToolEntry] = {e.name: e for e in self._entries}

    def start(self) -> None:
        for session in self.sessions:
            session.start()

    async def close(self) -> None:
        for session in self.sessions:
            await session.close()

    def _changed(self) -> None:
        self._version += 1

    def entries(self) -> list[ToolEntry]:
        self._rebuild()
        return list(self._entries)

    def get(self, name: str) -> ToolEntry | None:
        self._rebuild()
        return self._by_name.get(name)

    def names(self) -> set[str]:
        """Every tool name the catalog knows now, available or not (to validate a selection)."""
        self._rebuild()
        return set(self._by_name)

    def _rebuild(self) -> None:
        if self._built_version == self._version:
            return
        self._built_version = self._version
        listed: list[tuple[McpServerSession, str]] = []
        for session in self.sessions:
            config = session.config
            for tool in session.state.tools:
                if config.only is not None and tool.name not in config.only:
                    continue
                listed.append((session, tool.name))
        names = assign_names((e.name for e in self._builtin), ((s.name, raw) for s, raw in listed))
        entries = list(self._builtin)
        for session in self.sessions:
            config, state = session.config, session.state
            for tool in state.tools:
                key = (session.name, tool.name)
                if key not in names:
                    continue
                # Rebuilt at every change: a server may change a tool's description or schema too.
                adapter = McpTool(session, tool, names[key])
                available = state.status == "available"
                entries.append(
                    ToolEntry(
                        adapter,
                        session.name,
                        config.approval_of(tool.name),
                        available=available,
                        reason=None if available else state.reason,
                    )
                )
        self._entries = entries
        self._by_name = {e.name: e for e in entries}
