"""What a tool returned besides text (MCP images, audio, resources), as a tool step lists it.

Only a summary: the kind, the media type, the size and the name, bounded (render.py escapes them).
Nothing is loaded: not a remote resource, not an image (the event does not carry its content).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.run_events import ToolAttachment

MAX_SHOWN = 10
MAX_NAME_CHARS = 120
MAX_MIME_CHARS = 80
_KINDS = {"image": "Image", "audio": "Audio", "resource": "Resource", "resource_link": "Link to a resource"}


@dataclass(frozen=True, slots=True)
class Summary:
    """One attachment in plain, bounded text: untrusted (the name and type are the tool's)."""

    label: str
    name: str
    details: str


def size_text(size: int | None) -> str:
    if size is None or size < 0:
        return ""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def summaries(attachments: Sequence[ToolAttachment]) -> tuple[list[Summary], int]:
    """The first `MAX_SHOWN` attachments summarised, and how many more there are."""
    shown = []
    for item in attachments[:MAX_SHOWN]:
        details = [_bound(item.mime_type, MAX_MIME_CHARS)] if item.mime_type else []
        if size_text(item.size):
            details.append(size_text(item.size))
        label = _KINDS.get(item.kind, "Other content")
        shown.append(Summary(label, _bound(item.name, MAX_NAME_CHARS), ", ".join(details)))
    return shown, max(0, len(attachments) - MAX_SHOWN)


def _bound(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
