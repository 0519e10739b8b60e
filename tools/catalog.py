"""Every tool the agent may offer (built-in and MCP), with where it comes from, its approval policy and
whether it can be called now: the seam between the tool sources, the API and the agent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tools.base import Tool
from tools.tools_file import Approval

BUILTIN_SERVER = "builtin"


@dataclass(frozen=True, slots=True)
class ToolEntry:
    tool: Tool
    server: str
    """`builtin`, or the MCP server's name from the tools file."""
    approval: Approval
    available: bool = True
    reason: str | None = None
    """Why the tool is unavailable (its server is down, restarting, ...)."""

    @property
    def name(self) -> str:
        return self.tool.name


class ToolCatalog(Protocol):
    """The live set of tools. Entries change while the app runs (MCP servers connect, die, restart,
    and announce new tools), so callers ask for them per run instead of keeping a copy."""

    def entries(self) -> list[ToolEntry]:
        """Every configured tool, unavailable ones included, in a stable order."""
        ...

    def get(self, name: str) -> ToolEntry | None: ...


def offered_tools(
    catalog: ToolCatalog, selection: list[str] | None, *, allow_ask: bool = True
) -> dict[str, ToolEntry]:
    """The tools a run offers the model: the conversation's selection (None: every tool whose approval
    is not `deny`), available now, never `deny`, and without `ask` tools where nobody can approve."""
    chosen: dict[str, ToolEntry] = {}
    for entry in catalog.entries():
        if selection is not None and entry.name not in selection:
            continue
        if entry.approval == "deny" or not entry.available:
            continue
        if entry.approval == "ask" and not allow_ask:
            continue
        chosen[entry.name] = entry
    return chosen
