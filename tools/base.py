"""The contract every tool implements, and the values tools hand back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Source:
    """A citation the client can show as a link."""

    title: str
    url: str
    snippet: str = ""


@dataclass(frozen=True, slots=True)
class Attachment:
    """Something a tool returned besides text (an image, audio, a file): the model reads a summary of
    it in `ToolOutput.content`; clients can show it from here."""

    kind: str
    """`image`, `audio`, `resource` (embedded) or `resource_link`."""
    mime_type: str = ""
    size: int | None = None
    """Bytes, when known."""
    name: str = ""
    """The resource's URI or name, when it has one."""
    data: str | None = None
    """Base64 content of a small image, for display; None when too large or not an image."""


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """What one tool call produced.

    `content` is the text the model reads. `error` is set when the call failed; the content then
    explains the failure in words the model can relay, because tool errors are fed back, not raised.
    """

    content: str
    sources: list[Source] = field(default_factory=list)
    error: str | None = None
    attachments: list[Attachment] = field(default_factory=list)


class Tool(Protocol):
    """A callable the agent can offer to a model."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def parameters(self) -> dict[str, Any]:
        """JSON schema of the arguments object."""
        ...

    async def run(self, arguments: dict[str, Any]) -> ToolOutput:
        """Run the tool. Must not raise for bad arguments or provider failures: return an error output."""
        ...


ERROR_PREFIX = "Error: "
"""How every failed call's result starts, so that it still reads as a failure in a stored history."""


def error_output(message: str) -> ToolOutput:
    """A failed call, phrased for the model."""
    return ToolOutput(content=f"{ERROR_PREFIX}{message}", error=message)


def is_error_result(content: str) -> bool:
    return content.startswith(ERROR_PREFIX)
