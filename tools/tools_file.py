"""The tools file (`CHATSTACK_TOOLS_FILE`, default `tools/tools.yaml`): which built-in tools are on, which
MCP servers to connect to, and the approval policy of every tool."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Approval = Literal["auto", "ask", "deny"]
"""auto: the call runs; ask: the user approves each call first; deny: never offered to the model."""

SERVER_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"


class ToolsFileError(ValueError):
    """The tools file is missing, not YAML, or does not match the schema; the message says where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuiltinToolConfig(_Strict):
    enabled: bool = True
    approval: Approval = "auto"


class McpToolConfig(_Strict):
    approval: Approval | None = None
    """None: the server's default."""


class McpServerConfig(_Strict):
    name: str = Field(pattern=SERVER_NAME_PATTERN)
    command: str | None = None
    """stdio transport: the program to start (and `args`)."""
    args: list[str] = Field(default_factory=list)
    env: list[str] = Field(default_factory=list)
    """Names of chatstack's environment variables the server gets; nothing else is passed on."""
    url: str | None = None
    """Streamable HTTP transport: the endpoint."""
    headers_from_env: dict[str, str] = Field(default_factory=dict)
    """HTTP header name -> the environment variable holding its value (secrets stay out of the file)."""
    approval: Approval = "auto"
    tools: dict[str, McpToolConfig] = Field(default_factory=dict)
    only: list[str] | None = None
    """Expose only these of the server's tools."""
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    enabled: bool = True

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("set exactly one of `command` (stdio) or `url` (streamable HTTP)")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("`url` must be an http:// or https:// address")
        return self

    def approval_of(self, tool: str) -> Approval:
        override = self.tools.get(tool)
        return override.approval if override and override.approval else self.approval


class ToolsFile(_Strict):
    builtin: dict[str, BuiltinToolConfig] = Field(default_factory=dict)
    mcp_servers: list[McpServerConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_servers(self) -> ToolsFile:
        names = [s.name for s in self.mcp_servers]
        if len(names) != len(set(names)) or "builtin" in names:
            raise ValueError("MCP server names must be unique and not `builtin`")
        return self

    def builtin_config(self, tool: str) -> BuiltinToolConfig:
        return self.builtin.get(tool, BuiltinToolConfig())


def load_tools_file(path: Path) -> ToolsFile:
    """The parsed file; a missing file means the defaults (built-ins on, no MCP servers)."""
    if not path.exists():
        return ToolsFile()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ToolsFileError(f"{path}: cannot read the tools file: {exc}") from exc
    try:
        return ToolsFile.model_validate(raw or {})
    except ValidationError as exc:
        raise ToolsFileError(f"{path}: {exc}") from exc
