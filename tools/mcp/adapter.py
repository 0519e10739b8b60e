"""An MCP server's tool as a chatstack `Tool`: offered to the model like a built-in, called on the
server's long-lived session."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import mcp_types as types

from tools.base import Tool, ToolOutput, error_output
from tools.mcp.errors import McpCallFailed, McpCallTimeout, McpConnectionLost, McpUnavailable
from tools.mcp.results import to_tool_output
from tools.mcp.session import McpServerSession
from tools.web_search.formatting import clean_text

log = logging.getLogger(__name__)

MAX_DESCRIPTION_CHARS = 1000
"""A server's description of its tool is untrusted text the model reads with every request."""
MAX_SCHEMA_CHARS = 16_000
"""A larger argument schema is replaced by a plain object schema (it would crowd the context)."""
_RELAY = "Tell the user, and answer without this tool"


def bounded_description(raw: str | None) -> str:
    """The description as shown to the model and the user: one paragraph, control characters out."""
    return clean_text(raw or "", MAX_DESCRIPTION_CHARS)


def bounded_schema(raw: dict[str, Any] | None) -> dict[str, Any]:
    """The argument schema as an object schema, within `MAX_SCHEMA_CHARS` once serialised."""
    schema = dict(raw or {})
    try:
        size = len(json.dumps(schema))
    except (TypeError, ValueError):
        size = MAX_SCHEMA_CHARS + 1
    if size > MAX_SCHEMA_CHARS or schema.get("type", "object") != "object":
        return {"type": "object", "additionalProperties": True}
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return schema


class McpTool:
    """One tool of one MCP server, under the name it is offered with (see tools/mcp/names.py)."""

    def __init__(self, session: McpServerSession, listed: types.Tool, offered_name: str) -> None:
        self._session = session
        self.raw_name = listed.name
        self._name = offered_name
        self._description = bounded_description(listed.description or listed.title)
        self._parameters = bounded_schema(listed.input_schema)
        self.last_call_ms: float | None = None
        """Wall time of the latest call in this wrapper, for the overhead measurement."""

    @property
    def server(self) -> str:
        return self._session.name

    @property
    def name(self) -> str:
        return self._name

    @property
    def description(self) -> str:
        return self._description

    @property
    def parameters(self) -> dict[str, Any]:
        return self._parameters

    async def run(self, arguments: dict[str, Any]) -> ToolOutput:
        server, timeout_s, tool = self.server, self._session.config.timeout_s, self._name
        started = time.perf_counter()
        try:
            result = await self._session.call(self.raw_name, arguments, timeout_s)
        except McpUnavailable as exc:
            return error_output(f"the {server} MCP server is unavailable right now ({exc}). {_RELAY}.")
        except McpCallTimeout:
            return error_output(
                f"the {tool} tool ({server} MCP server) did not answer within {timeout_s:g} s"
            )
        except McpConnectionLost as exc:
            return error_output(f"the {server} MCP server stopped during the call ({exc}). {_RELAY}.")
        except McpCallFailed as exc:
            return error_output(f"the {tool} tool ({server} MCP server) failed: {clean_text(str(exc), 300)}")
        output = to_tool_output(result, server=server, tool=tool)
        self.last_call_ms = (time.perf_counter() - started) * 1000
        return output


def _conforms(tool: McpTool) -> Tool:
    return tool  # mypy checks here that McpTool satisfies the Tool protocol
