"""A conversation as a downloadable document: JSON (complete) or Markdown (readable)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from app.schemas import Conversation, MessageOut


def export_json(conversation: Conversation, messages: Sequence[MessageOut]) -> str:
    document = {
        "conversation": conversation.model_dump(mode="json"),
        "messages": [m.model_dump(mode="json") for m in messages],
    }
    return json.dumps(document, ensure_ascii=False, indent=2)


def export_markdown(conversation: Conversation, messages: Sequence[MessageOut]) -> str:
    lines = [
        f"# {conversation.title}",
        "",
        f"_Exported from chatstack; started {conversation.created_at:%Y-%m-%d %H:%M} UTC._",
        "",
    ]
    for message in messages:
        if message.role == "user":
            lines += ["## User", "", message.content, ""]
        elif message.role == "assistant":
            if message.content or message.status != "complete":
                marker = "" if message.status == "complete" else f" _({message.status})_"
                lines += [f"## Assistant{marker}", "", message.content, ""]
            for call in message.tool_calls:
                lines += [f"> **Tool call** `{call.name}`: `{call.arguments}`", ""]
        elif message.role == "tool":
            lines += [f"> **{message.name or 'tool'} result**", ">"]
            lines += [f"> {line}" if line else ">" for line in message.content.splitlines()]
            if message.sources:
                lines += [">"] + [f"> - [{s.title or s.url}]({s.url})" for s in message.sources]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def export_filename(conversation: Conversation, extension: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in conversation.title.lower())[:40].strip("-")
    return f"{safe or 'conversation'}-{conversation.id[:8]}.{extension}"
